package store

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func testPod(name string) *herdv1.Pod {
	grace := int64(5)
	return &herdv1.Pod{
		Spec: &herdv1.PodSpec{
			Name:                          name,
			Labels:                        map[string]string{"app": name},
			RestartPolicy:                 "Always",
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []*herdv1.ContainerSpec{{Name: "main", Image: "busybox:1", Command: []string{"sleep", "60"}}},
		},
		Status:    &herdv1.PodStatus{Phase: "Running", Containers: []*herdv1.ContainerStatus{{Name: "main", State: "running", Pid: 42}}},
		Uid:       "uid-" + name,
		SpecHash:  "hash-" + name,
		CreatedAt: timestamppb.Now(),
	}
}

func TestPodsPersistAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "agentd.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	web, db := testPod("web"), testPod("db")
	for _, p := range []*herdv1.Pod{web, db, testPod("gone")} {
		if err := s.PutPod(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeletePod("gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePod("never-existed"); err != nil {
		t.Fatalf("deleting a missing pod: %v", err)
	}
	if err := s.SetNodeLabels(map[string]string{"zone": "a", "disk": "ssd"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetPod("web")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, web) {
		t.Errorf("GetPod(web) after reopen = %v, want %v", got, web)
	}
	if _, err := s.GetPod("gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetPod(gone) error = %v, want ErrNotFound", err)
	}
	list, err := s.ListPods()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].GetSpec().GetName() != "db" || list[1].GetSpec().GetName() != "web" {
		t.Errorf("ListPods = %v, want db and web", list)
	}
	if !proto.Equal(list[0], db) {
		t.Errorf("ListPods()[0] = %v, want %v", list[0], db)
	}
	labels, err := s.GetNodeLabels()
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) != 2 || labels["zone"] != "a" || labels["disk"] != "ssd" {
		t.Errorf("node labels = %v", labels)
	}
	if v, err := s.SchemaVersion(); err != nil || v != SchemaVersion {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, SchemaVersion)
	}
}

func TestSetNodeLabelsReplaces(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "agentd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []map[string]string{
		{"a": "1", "b": "2"},
		{"c": "3"},
		{},
		nil,
	} {
		if err := s.SetNodeLabels(tc); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetNodeLabels()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc) {
			t.Fatalf("labels = %v, want %v", got, tc)
		}
		for k, v := range tc {
			if got[k] != v {
				t.Fatalf("labels = %v, want %v", got, tc)
			}
		}
	}
}

func TestPutPodNeedsName(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "agentd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutPod(&herdv1.Pod{}); err == nil {
		t.Fatal("PutPod without a name succeeded")
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentd.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("a second Open of a held store succeeded")
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentd.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("99"))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("opened a store with a newer schema")
	} else if !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("error = %v", err)
	}
}

package volumes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// A write past the size fails with ENOSPC in that volume only.
func TestVolumeFullIsENOSPC(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	apply(t, m, "full", "16Mi", false)
	apply(t, m, "other", "16Mi", false)
	full, other := mountPath(t, m, "full"), mountPath(t, m, "other")

	f, err := os.Create(filepath.Join(full, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, mi)
	var written int64
	for written <= 17*mi {
		n, err := f.Write(chunk)
		written += int64(n)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write after %d bytes: %v, want ENOSPC", written, err)
			}
			break
		}
	}
	if written > 16*mi {
		t.Fatalf("wrote %d bytes into a 16Mi volume", written)
	}
	data := randomBytes(t, mi)
	p := filepath.Join(other, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("the other volume refuses a write: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the other volume's file: %v", err)
	}
}

func TestVolumeGrowOnline(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	apply(t, m, "data", "16Mi", false)
	mnt := mountPath(t, m, "data")
	data := randomBytes(t, 4*mi)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := capacity(t, mnt)

	v, changed, err := m.Apply(t.Context(), &herdv1.VolumeSpec{Name: "data", Size: "32Mi"})
	if err != nil || !changed {
		t.Fatalf("grow: changed %v, %v", changed, err)
	}
	after := capacity(t, mnt)
	if after < before+15*mi {
		t.Fatalf("capacity %d after growing by 16Mi from %d", after, before)
	}
	if v.GetSizeBytes() != 32*mi || v.GetSpec().GetSize() != "32Mi" || v.GetStatus().GetCapacityBytes() != after {
		t.Fatalf("volume after grow: %v", v)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file changed by the grow (err %v)", err)
	}
	if n := mountsAt(t, mnt); n != 1 {
		t.Fatalf("%d mounts after the grow", n)
	}
}

func TestVolumeShrinkRefused(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	created := apply(t, m, "data", "32Mi", false)
	mnt := mountPath(t, m, "data")
	before := capacity(t, mnt)

	_, changed, err := m.Apply(t.Context(), &herdv1.VolumeSpec{Name: "data", Size: "16Mi"})
	if !errors.Is(err, ErrInvalid) || changed {
		t.Fatalf("shrink: changed %v, %v; want ErrInvalid", changed, err)
	}
	if !strings.Contains(err.Error(), "a volume cannot shrink (from 32Mi to 16Mi)") {
		t.Fatalf("shrink refused with %q", err)
	}
	v, err := m.Get("", "data")
	if err != nil {
		t.Fatal(err)
	}
	if v.GetSizeBytes() != 32*mi || v.GetSpec().GetSize() != "32Mi" || v.GetUid() != created.GetUid() {
		t.Fatalf("volume after a refused shrink: %v", v)
	}
	if got := capacity(t, mnt); got != before {
		t.Fatalf("capacity %d, was %d", got, before)
	}
	if st, err := os.Stat(imageOf(mnt)); err != nil || st.Size() != 32*mi {
		t.Fatalf("image: %v, %v", st, err)
	}
}

func TestVolumeApply(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	first, changed, err := m.Apply(t.Context(), &herdv1.VolumeSpec{Name: "data", Size: "16Mi"})
	if err != nil || !changed {
		t.Fatalf("create: changed %v, %v", changed, err)
	}
	if first.GetSpec().GetNamespace() != "default" || first.GetUid() == "" || first.GetSizeBytes() != 16*mi ||
		first.GetStatus().GetPhase() != PhaseAvailable || first.GetStatus().GetCapacityBytes() <= 0 || first.GetStatus().GetMessage() != "" {
		t.Fatalf("created: %v", first)
	}
	for _, tc := range []struct {
		name        string
		spec        *herdv1.VolumeSpec
		wantChanged bool
		wantErr     string // a FieldErrors message part
		protected   bool
	}{
		{name: "same spec", spec: &herdv1.VolumeSpec{Name: "data", Size: "16Mi"}},
		{name: "same spec, namespace spelled out", spec: &herdv1.VolumeSpec{Namespace: "default", Name: "data", Size: "16Mi"}},
		{name: "protect", spec: &herdv1.VolumeSpec{Name: "data", Size: "16Mi", DeletionProtection: true}, wantChanged: true, protected: true},
		{name: "unprotect", spec: &herdv1.VolumeSpec{Name: "data", Size: "16Mi"}, wantChanged: true},
		{name: "bad name", spec: &herdv1.VolumeSpec{Name: "Data_1", Size: "16Mi"}, wantErr: "name"},
		{name: "too small", spec: &herdv1.VolumeSpec{Name: "data", Size: "1Ki"}, wantErr: "below the minimum of 1Mi"},
		{name: "no size", spec: &herdv1.VolumeSpec{Name: "data"}, wantErr: "is required"},
		{name: "nil", spec: nil, wantErr: "spec is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, changed, err := m.Apply(t.Context(), tc.spec)
			if tc.wantErr != "" {
				var fe spec.FieldErrors
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want FieldErrors with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || changed != tc.wantChanged {
				t.Fatalf("changed %v, %v; want %v", changed, err, tc.wantChanged)
			}
			if v.GetUid() != first.GetUid() || v.GetSpec().GetDeletionProtection() != tc.protected {
				t.Fatalf("volume: %v", v)
			}
		})
	}
	vs, err := m.List("")
	if err != nil || len(vs) != 1 {
		t.Fatalf("List: %v, %v", vs, err)
	}
	if vs, err := m.List("other"); err != nil || len(vs) != 0 {
		t.Fatalf("List(other): %v, %v", vs, err)
	}
}

func TestVolumeDelete(t *testing.T) {
	dir := testDir(t)
	m := startManager(t, dir, nil)
	var users fakeUsers
	m.SetUsers(users.users)
	v := apply(t, m, "data", "16Mi", true)
	mnt := mountPath(t, m, "data")
	img := imageOf(mnt)

	for _, tc := range []struct {
		name    string
		protect bool
		rw      string
		ro      []string
		uid     string
		want    error
		wantMsg string
	}{
		{name: "protected", protect: true, want: ErrProtected, wantMsg: "set deletion_protection = false first"},
		{name: "mounted read-write", rw: "web", want: ErrInUse, wantMsg: "pod web"},
		{name: "mounted read-only", ro: []string{"a", "b"}, want: ErrInUse, wantMsg: "a, b"},
		{name: "another incarnation", uid: "0123", want: spec.ErrOtherIncarnation, wantMsg: "not 0123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := m.Apply(t.Context(), &herdv1.VolumeSpec{Name: "data", Size: "16Mi", DeletionProtection: tc.protect}); err != nil {
				t.Fatal(err)
			}
			users.set("default", "data", tc.rw, tc.ro...)
			existed, err := m.Delete(t.Context(), "", "data", tc.uid)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) || !existed {
				t.Fatalf("Delete: existed %v, %v; want %v with %q", existed, err, tc.want, tc.wantMsg)
			}
			got, err := m.Get("", "data")
			if err != nil || got.GetUid() != v.GetUid() {
				t.Fatalf("volume after a refused delete: %v, %v", got, err)
			}
			if tc.rw != "" || tc.ro != nil {
				if st := got.GetStatus(); st.GetPhase() != PhaseBound || st.GetBoundTo() != tc.rw || len(st.GetReaders()) != len(tc.ro) {
					t.Fatalf("status: %v", st)
				}
			}
			if ok, err := Mounted(mnt); !ok || err != nil {
				t.Fatalf("not mounted after a refused delete: %v", err)
			}
		})
	}

	users.set("default", "data", "")
	existed, err := m.Delete(t.Context(), "default", "data", v.GetUid())
	if err != nil || !existed {
		t.Fatalf("Delete: existed %v, %v", existed, err)
	}
	if loops := testLoops(t, img); len(loops) != 0 {
		t.Fatalf("loop devices left: %v", loops)
	}
	if _, err := os.Stat(filepath.Join(dir, v.GetUid())); !os.IsNotExist(err) {
		t.Fatalf("volume dir left: %v", err)
	}
	if _, err := m.Get("", "data"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
	if _, err := m.MountPath(t.Context(), "", "data"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MountPath after delete: %v", err)
	}
	if existed, err := m.Delete(t.Context(), "", "data", ""); existed || err != nil {
		t.Fatalf("second Delete: existed %v, %v", existed, err)
	}
}

// Directories that look like volumes but have no valid record are never
// listed, mounted or removed.
func TestVolumeForeignDirsLeftAlone(t *testing.T) {
	dir := testDir(t)
	m := startManager(t, dir, nil)
	ours := apply(t, m, "ours", "16Mi", false)

	valid := func(uid string) string {
		return `{"herd":"volume","namespace":"default","name":"x","uid":"` + uid + `","size":"16Mi","size_bytes":16777216,"created_at":"2026-01-01T00:00:00Z"}`
	}
	foreign := map[string]string{ // uid-like dir name: its volume.json ("" for none)
		"11111111-1111-4111-8111-111111111111": "",
		"22222222-2222-4222-8222-222222222222": `{"herd":"volume", "name": `,
		"33333333-3333-4333-8333-333333333333": valid("44444444-4444-4444-8444-444444444444"),
		"55555555-5555-4555-8555-555555555555": strings.Replace(valid("55555555-5555-4555-8555-555555555555"), `"herd":"volume"`, `"herd":"other"`, 1),
	}
	for name, rec := range foreign {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(d, mountDir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := CreateImage(t.Context(), filepath.Join(d, imageFile), 16*mi); err != nil {
			t.Fatal(err)
		}
		if rec != "" {
			if err := os.WriteFile(filepath.Join(d, recordFile), []byte(rec), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	var log logBuffer
	m2 := startManager(t, dir, &log)
	vs, err := m2.List("")
	if err != nil || len(vs) != 1 || vs[0].GetUid() != ours.GetUid() {
		t.Fatalf("List: %v, %v; want only %s", vs, err, ours.GetUid())
	}
	if existed, err := m2.Delete(t.Context(), "", "x", ""); existed || err != nil {
		t.Fatalf("Delete x: existed %v, %v", existed, err)
	}
	for name, rec := range foreign {
		d := filepath.Join(dir, name)
		if !strings.Contains(log.String(), d) {
			t.Errorf("Start did not log %s", d)
		}
		if ok, err := Mounted(filepath.Join(d, mountDir)); ok || err != nil {
			t.Errorf("%s mounted (%v)", d, err)
		}
		if loops := testLoops(t, filepath.Join(d, imageFile)); len(loops) != 0 {
			t.Errorf("%s attached: %v", d, loops)
		}
		if st, err := os.Stat(filepath.Join(d, imageFile)); err != nil || st.Size() != 16*mi {
			t.Errorf("%s image: %v", d, err)
		}
		got, err := os.ReadFile(filepath.Join(d, recordFile))
		if rec == "" && !os.IsNotExist(err) || rec != "" && string(got) != rec {
			t.Errorf("%s record: %q, %v", d, got, err)
		}
	}
}

// After a reboot nothing is attached: Start attaches and mounts again.
func TestVolumeStartAfterReboot(t *testing.T) {
	dir := testDir(t)
	m := startManager(t, dir, nil)
	files := map[string][]byte{"a": randomBytes(t, 100), "b": randomBytes(t, 2*mi)}
	mnts := map[string]string{}
	for name, data := range files {
		apply(t, m, name, "16Mi", false)
		mnts[name] = mountPath(t, m, name)
		if err := os.WriteFile(filepath.Join(mnts[name], "f"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, mnt := range mnts {
		if err := Unmount(t.Context(), imageOf(mnt), mnt); err != nil {
			t.Fatal(err)
		}
		if loops := testLoops(t, imageOf(mnt)); len(loops) != 0 {
			t.Fatalf("still attached: %v", loops)
		}
	}

	m2 := startManager(t, dir, nil)
	for name, data := range files {
		mnt := mnts[name]
		if ok, err := Mounted(mnt); !ok || err != nil {
			t.Fatalf("%s not mounted after Start (%v)", name, err)
		}
		if got := mountPath(t, m2, name); got != mnt {
			t.Fatalf("mount path %s, was %s", got, mnt)
		}
		if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s's file after the reboot: %v", name, err)
		}
		if loops := testLoops(t, imageOf(mnt)); len(loops) != 1 {
			t.Fatalf("loop devices: %v", loops)
		}
		if v, err := m2.Get("", name); err != nil || v.GetStatus().GetMessage() != "" || v.GetStatus().GetUsedBytes() <= 0 {
			t.Fatalf("volume %s: %v, %v", name, v, err)
		}
	}
}

// After agentd was killed its volumes are still mounted: Start reuses the
// mounts and loop devices.
func TestVolumeStartAfterKill(t *testing.T) {
	dir := testDir(t)
	m := startManager(t, dir, nil)
	apply(t, m, "data", "16Mi", false)
	mnt := mountPath(t, m, "data")
	data := randomBytes(t, mi)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	loops := testLoops(t, imageOf(mnt))

	m2 := startManager(t, dir, nil)
	if got := mountPath(t, m2, "data"); got != mnt {
		t.Fatalf("mount path %s, was %s", got, mnt)
	}
	if got := testLoops(t, imageOf(mnt)); len(got) != 1 || got[0] != loops[0] {
		t.Fatalf("loop devices %v, were %v", got, loops)
	}
	if n := mountsAt(t, mnt); n != 1 {
		t.Fatalf("%d mounts at the mount point", n)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file: %v", err)
	}
}

// A volume whose image cannot be mounted is listed with the reason, and
// MountPath refuses it; once the mount point is free again it mounts.
func TestVolumeMountFailure(t *testing.T) {
	dir := testDir(t)
	m := startManager(t, dir, nil)
	apply(t, m, "data", "16Mi", false)
	mnt := mountPath(t, m, "data")
	if err := Unmount(t.Context(), imageOf(mnt), mnt); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("other", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}

	m2 := startManager(t, dir, nil)
	v, err := m2.Get("", "data")
	if err != nil || !strings.Contains(v.GetStatus().GetMessage(), "mount failed") {
		t.Fatalf("volume: %v, %v; want a mount failure in its status", v, err)
	}
	if _, err := m2.MountPath(t.Context(), "", "data"); err == nil {
		t.Fatal("MountPath of a volume that cannot mount succeeded")
	}
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if got := mountPath(t, m2, "data"); got != mnt {
		t.Fatalf("mount path %s", got)
	}
	if v, err := m2.Get("", "data"); err != nil || v.GetStatus().GetMessage() != "" {
		t.Fatalf("volume after mounting: %v, %v", v, err)
	}
	if _, err := m2.MountPath(t.Context(), "", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MountPath of a missing volume: %v", err)
	}
}

// A volume a pod mounts grows online where agentd has CAP_SYS_RESOURCE;
// without it the grow is refused and nothing changes.
func TestVolumeGrowInUse(t *testing.T) {
	m := startManager(t, testDir(t), nil)
	var users fakeUsers
	m.SetUsers(users.users)
	apply(t, m, "data", "16Mi", false)
	mnt := mountPath(t, m, "data")
	users.set("default", "data", "web")
	before := capacity(t, mnt)

	v, changed, err := m.Apply(t.Context(), &herdv1.VolumeSpec{Name: "data", Size: "32Mi"})
	if canGrowOnline() {
		if err != nil || !changed || capacity(t, mnt) < before+15*mi {
			t.Fatalf("online grow: changed %v, %v", changed, err)
		}
		return
	}
	if !errors.Is(err, ErrInUse) || changed || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
		t.Fatalf("grow without CAP_SYS_RESOURCE of a volume in use: %v, %v, %v; want ErrInUse", v, changed, err)
	}
	if got, err := m.Get("", "data"); err != nil || got.GetSizeBytes() != 16*mi {
		t.Fatalf("volume after a refused grow: %v, %v", got, err)
	}
	if got := capacity(t, mnt); got != before {
		t.Fatalf("capacity %d, was %d", got, before)
	}
	if st, err := os.Stat(imageOf(mnt)); err != nil || st.Size() != 16*mi {
		t.Fatalf("image: %v, %v", st, err)
	}
}

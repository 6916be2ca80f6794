package capacity

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestFormat(t *testing.T) {
	cpu := map[int64]string{2000: "2", 1500: "1.5", 500: "500m", 1250: "1250m", 0: "0"}
	for in, want := range cpu {
		if got := FormatCPU(in); got != want {
			t.Errorf("FormatCPU(%d) = %q, want %q", in, got, want)
		}
	}
	mem := map[int64]string{3 << 30: "3Gi", 1288490189: "1.2Gi", 512 << 20: "512Mi", 64 << 10: "64Ki", 100: "100", 0: "0"}
	for in, want := range mem {
		if got := FormatMemory(in); got != want {
			t.Errorf("FormatMemory(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestRequests(t *testing.T) {
	got := Requests(&herdv1.PodSpec{Containers: []*herdv1.ContainerSpec{
		{Name: "a", Cpu: "1", Memory: "1Gi", MemoryRequest: "256Mi"},
		{Name: "b", CpuRequest: "250m"},
		{Name: "c"},
	}})
	if want := (Resources{CPUMillis: 1250, MemoryBytes: 256 << 20}); got != want {
		t.Fatalf("Requests = %+v, want %+v", got, want)
	}
	if free := (Info{Allocatable: Resources{1000, 100}, Requested: Resources{1500, 40}}).Free(); free != (Resources{0, 60}) {
		t.Fatalf("Free = %+v", free)
	}
}

// fakeLocal records what is published.
type fakeLocal struct {
	mu     sync.Mutex
	values [][]byte
}

func (f *fakeLocal) PublishLocal(kind, key string, value []byte) error {
	if kind != Kind || key != Key {
		panic("unexpected entry " + kind + "/" + key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values = append(f.values, append([]byte(nil), value...))
	return nil
}

func (f *fakeLocal) last() (Info, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.values) == 0 {
		return Info{}, 0
	}
	i, err := Decode(f.values[len(f.values)-1])
	if err != nil {
		panic(err)
	}
	return i, len(f.values)
}

func TestPublisher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	cur := Info{Allocatable: Resources{4000, 4 << 30}, Ready: true}
	set := func(f func(*Info)) {
		mu.Lock()
		f(&cur)
		mu.Unlock()
	}
	read := func(context.Context) (Info, error) {
		mu.Lock()
		defer mu.Unlock()
		return cur, nil
	}
	local := &fakeLocal{}
	p := NewPublisher(read, local, nil)
	p.Debounce = time.Millisecond
	go p.Run(ctx)

	waitInfo := func(want Info) int {
		t.Helper()
		var n int
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			var got Info
			got, n = local.last()
			return n > 0 && reflect.DeepEqual(got, want), nil
		})
		if err != nil {
			got, _ := local.last()
			t.Fatalf("published %+v, want %+v", got, want)
		}
		return n
	}
	waitInfo(cur) // on start, without a change

	set(func(i *Info) { i.Requested = Resources{500, 256 << 20}; i.Pods = 1 })
	p.Changed("web")
	n := waitInfo(Info{Allocatable: Resources{4000, 4 << 30}, Requested: Resources{500, 256 << 20}, Pods: 1, Ready: true})

	// Changes that leave the value as it is write nothing.
	for range 5 {
		p.Changed("web")
	}
	set(func(i *Info) { i.Pods = 0; i.Requested = Resources{} })
	p.Changed("web")
	if m := waitInfo(Info{Allocatable: Resources{4000, 4 << 30}, Ready: true}); m != n+1 {
		t.Fatalf("%d writes after the pod went away, want %d (unchanged values are not written again)", m, n+1)
	}
}

package cluster

import (
	"errors"
	"testing"
)

// DeleteIf deletes only what its check accepts, and keeps the object
// (still readable, same version) when the check refuses.
func TestDeleteIf(t *testing.T) {
	errRefused := errors.New("refused")
	a := newNode(t, "a")
	join(t, a)
	for _, tc := range []struct {
		name        string
		put         bool // the object exists
		refuse      bool
		wantExisted bool
		wantErr     error
		wantKept    bool
	}{
		{name: "accepted", put: true, wantExisted: true},
		{name: "refused", put: true, refuse: true, wantErr: errRefused, wantKept: true},
		{name: "missing", wantExisted: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "k-" + tc.name
			var version uint64
			if tc.put {
				v, err := a.Put("service", key, []byte("x"))
				if err != nil {
					t.Fatal(err)
				}
				version = v
			}
			var seen []Object
			existed, err := a.DeleteIf("service", key, func(o Object) error {
				seen = append(seen, o)
				if tc.refuse {
					return errRefused
				}
				return nil
			})
			if existed != tc.wantExisted || !errors.Is(err, tc.wantErr) {
				t.Fatalf("DeleteIf = %v, %v; want %v, %v", existed, err, tc.wantExisted, tc.wantErr)
			}
			if tc.put && (len(seen) != 1 || string(seen[0].Value) != "x" || seen[0].Version != version) {
				t.Fatalf("check saw %+v, want the object at version %d", seen, version)
			}
			if !tc.put && len(seen) != 0 {
				t.Fatalf("check called for a missing object: %+v", seen)
			}
			o, ok := a.Get("service", key)
			if ok != tc.wantKept || (ok && o.Version != version) {
				t.Fatalf("after DeleteIf: Get = %+v, %v; want kept %v at version %d", o, ok, tc.wantKept, version)
			}
		})
	}
}

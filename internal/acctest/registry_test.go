package acctest

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestRegistryBasicAuth(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	r := RegistryForTest(t, WithBasicAuth("herd", "s3cret"))
	if user, pass := r.Credentials(); user != "herd" || pass != "s3cret" {
		t.Errorf("Credentials() = %q, %q", user, pass)
	}

	for _, tc := range []struct {
		name       string
		user, pass string
		setAuth    bool
		want       int
	}{
		{name: "no credentials", want: http.StatusUnauthorized},
		{name: "wrong password", user: "herd", pass: "nope", setAuth: true, want: http.StatusUnauthorized},
		{name: "wrong user", user: "root", pass: "s3cret", setAuth: true, want: http.StatusUnauthorized},
		{name: "right credentials", user: "herd", pass: "s3cret", setAuth: true, want: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+r.Host()+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.setAuth {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET /v2/: status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusUnauthorized {
				if got, want := resp.Header.Get("WWW-Authenticate"), `Basic realm="herd-test"`; got != want {
					t.Errorf("WWW-Authenticate = %q, want %q", got, want)
				}
			}
		})
	}

	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// An anonymous push must be refused.
	anonRef, err := name.NewTag(r.Ref("anon/busybox", "latest"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(anonRef, img, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous)); err == nil {
		t.Error("anonymous push succeeded")
	}

	ref, err := r.Push(ctx, "herd/busybox", "v1", img)
	if err != nil {
		t.Fatal(err)
	}
	if want := r.Host() + "/herd/busybox:v1"; ref != want {
		t.Errorf("Push returned %q, want %q", ref, want)
	}

	// Read it back with go-containerregistry: with credentials it matches,
	// without it is refused.
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(tag, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "herd", Password: "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, _ := got.Digest()
	wantDigest, _ := img.Digest()
	if gotDigest != wantDigest {
		t.Errorf("registry serves %s, pushed %s", gotDigest, wantDigest)
	}
	if _, err := remote.Image(tag, remote.WithContext(ctx)); err == nil {
		t.Error("anonymous pull succeeded")
	}

	// containerd's resolver, no daemon needed: with credentials it
	// resolves the pushed digest, without it gets a 401.
	_, desc, err := r.Resolver().Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("resolve with credentials: %v", err)
	}
	if desc.Digest.String() != wantDigest.String() {
		t.Errorf("resolved %s, want %s", desc.Digest, wantDigest)
	}
	if _, _, err := NewResolver(r.Host(), "", "").Resolve(ctx, ref); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("resolve without credentials: want a 401 error, got %v", err)
	}
}

func TestRegistryAnonymous(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	r := RegistryForTest(t)
	if !strings.HasPrefix(r.Host(), "127.0.0.1:") {
		t.Errorf("Host() = %q, want 127.0.0.1:PORT", r.Host())
	}
	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := r.Push(ctx, "library/busybox", "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	_, desc, err := r.Resolver().Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if desc.Digest.String() != want.String() {
		t.Errorf("resolved %s, want %s", desc.Digest, want)
	}
}

func TestRegistryFixedAddr(t *testing.T) {
	t.Parallel()
	// Find a free port, then ask for it explicitly. Parallel tests may take
	// the port in between, so try a few.
	var (
		r    *Registry
		addr string
		err  error
	)
	for range 5 {
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		addr = ln.Addr().String()
		ln.Close()
		if r, err = StartRegistry(WithAddr(addr)); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Host() != addr {
		t.Errorf("Host() = %q, want %q", r.Host(), addr)
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/: %d", resp.StatusCode)
	}
	// A second registry on the same port must fail, not silently move.
	if r2, err := StartRegistry(WithAddr(addr)); err == nil {
		r2.Close()
		t.Error("second registry on the same address started")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Closed means closed: the port is free again.
	if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
		_ = resp.Body.Close()
		t.Error("registry still answers after Close")
	}
}

func TestRegistryRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "10.0.0.1:5000"} {
		if r, err := StartRegistry(WithAddr(addr)); err == nil {
			r.Close()
			t.Errorf("StartRegistry(WithAddr(%q)) succeeded", addr)
		}
	}
}

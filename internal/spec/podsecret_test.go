package spec

import (
	"fmt"
	"strings"
	"testing"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestParseSecretRef(t *testing.T) {
	tests := []struct {
		in, ns, name, err string
	}{
		{"db", "default", "db", ""},
		{"prod/db", "prod", "db", ""},
		{"a-1/b-2", "a-1", "b-2", ""},
		{"", "", "", "must not be empty"},
		{"/db", "", "", "namespace must not be empty"},
		{"prod/", "", "", "name must not be empty"},
		{"Prod/db", "", "", "namespace"},
		{"prod/DB", "", "", "name"},
		{"a/b/c", "", "", "name"},
		{"db_1", "", "", "RFC 1123"},
		{strings.Repeat("a", 64), "", "", "RFC 1123"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ns, name, err := ParseSecretRef(tt.in)
			checkErr(t, err, tt.err)
			if err == nil && (ns != tt.ns || name != tt.name) {
				t.Errorf("ParseSecretRef(%q) = %q, %q; want %q, %q", tt.in, ns, name, tt.ns, tt.name)
			}
		})
	}
}

func TestValidateSecretMountPath(t *testing.T) {
	tests := []struct{ in, err string }{
		{"/run/secrets/db", ""},
		{"/etc/app", ""},
		{"/procfs", ""},
		{"/devices/x", ""},
		{"/etc/resolv.conf.d", ""},
		{"", "must not be empty"},
		{"run/secrets", "absolute"},
		{"/", `must not be "/"`},
		{"/run/secrets/", "clean path"},
		{"/run/../etc", "clean path"},
		{"/run/./x", "clean path"},
		{"//x", "clean path"},
		{"/proc", "in /proc"},
		{"/proc/self", "in /proc"},
		{"/sys/fs/cgroup", "in /sys"},
		{"/dev/shm/x", "in /dev"},
		{"/etc/resolv.conf", "resolv.conf"},
		{"/etc", "resolv.conf"},
		{"/x\x00", "NUL"},
		{"/" + strings.Repeat("a", 1024), "at most 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			checkErr(t, ValidateSecretMountPath(tt.in), tt.err)
		})
	}
}

func u32(v uint32) *uint32 { return &v }

func TestValidatePodSecrets(t *testing.T) {
	base := func(mut func(s *herdv1.PodSpec, c *herdv1.ContainerSpec)) *herdv1.PodSpec {
		c := &herdv1.ContainerSpec{Name: "app", Image: "busybox", Env: map[string]string{"PLAIN": "x"}}
		s := &herdv1.PodSpec{Name: "web", Containers: []*herdv1.ContainerSpec{c}}
		mut(s, c)
		return s
	}
	mount := func(ms ...*herdv1.SecretMount) func(*herdv1.PodSpec, *herdv1.ContainerSpec) {
		return func(_ *herdv1.PodSpec, c *herdv1.ContainerSpec) { c.SecretMounts = ms }
	}
	envs := func(vs ...*herdv1.SecretEnv) func(*herdv1.PodSpec, *herdv1.ContainerSpec) {
		return func(_ *herdv1.PodSpec, c *herdv1.ContainerSpec) { c.SecretEnv = vs }
	}
	tests := []struct {
		name string
		mut  func(*herdv1.PodSpec, *herdv1.ContainerSpec)
		want []string // every one must be in the error; none: valid
	}{
		{"no secrets", func(*herdv1.PodSpec, *herdv1.ContainerSpec) {}, nil},
		{"full", func(s *herdv1.PodSpec, c *herdv1.ContainerSpec) {
			c.SecretMounts = []*herdv1.SecretMount{
				{Secret: "db"},
				{Secret: "prod/tls", Path: "/etc/tls", Uid: u32(1000), Gid: u32(4294967295), Keys: []string{"tls.crt", "tls.key"}, Mode: u32(0o440)},
				{Secret: "db2", Path: "/run/secrets/db2"},
			}
			c.SecretEnv = []*herdv1.SecretEnv{{Name: "DB_PASSWORD", Secret: "db", Key: "password"}, {Name: "_X1", Secret: "prod/x", Key: "k"}}
			s.ImagePullSecret = "registry"
			s.Namespace = "prod"
		}, nil},
		{"mode 0777", mount(&herdv1.SecretMount{Secret: "db", Mode: u32(0o777)}), nil},
		{"bad ref", mount(&herdv1.SecretMount{Secret: "Bad/ref"}),
			[]string{`containers[0].secret_mounts[0].secret: invalid secret reference "Bad/ref": namespace`}},
		{"empty ref", mount(&herdv1.SecretMount{Secret: ""}),
			[]string{"containers[0].secret_mounts[0].secret: secret reference must not be empty"}},
		{"nil mount", mount(nil), []string{"containers[0].secret_mounts[0]: secret mount is empty"}},
		{"relative path", mount(&herdv1.SecretMount{Secret: "a"}, &herdv1.SecretMount{Secret: "b", Path: "x/y"}),
			[]string{"containers[0].secret_mounts[1].path: must be an absolute path"}},
		{"proc", mount(&herdv1.SecretMount{Secret: "a", Path: "/proc/x"}), []string{"secret_mounts[0].path: must not be in /proc"}},
		{"resolv.conf", mount(&herdv1.SecretMount{Secret: "a", Path: "/etc/resolv.conf"}), []string{"secret_mounts[0].path: must not be /etc/resolv.conf"}},
		{"trailing slash", mount(&herdv1.SecretMount{Secret: "a", Path: "/a/"}), []string{"secret_mounts[0].path: must be a clean path"}},
		{"same default path", mount(&herdv1.SecretMount{Secret: "db"}, &herdv1.SecretMount{Secret: "default/db"}),
			[]string{"secret_mounts[1].path: /run/secrets/db is also the path of secret_mounts[0]"}},
		{"same explicit path", mount(&herdv1.SecretMount{Secret: "a", Path: "/s"}, &herdv1.SecretMount{Secret: "b", Path: "/s"}),
			[]string{"secret_mounts[1].path: /s is also the path of secret_mounts[0]"}},
		{"nested", mount(&herdv1.SecretMount{Secret: "a", Path: "/run/secrets"}, &herdv1.SecretMount{Secret: "b"}),
			[]string{"secret_mounts[1].path: /run/secrets/b is inside /run/secrets, the path of secret_mounts[0]"}},
		{"nesting", mount(&herdv1.SecretMount{Secret: "b"}, &herdv1.SecretMount{Secret: "a", Path: "/run"}),
			[]string{"secret_mounts[1].path: /run contains /run/secrets/b, the path of secret_mounts[0]"}},
		{"prefix is not nesting", mount(&herdv1.SecretMount{Secret: "a", Path: "/s"}, &herdv1.SecretMount{Secret: "b", Path: "/s2"}), nil},
		{"bad key", mount(&herdv1.SecretMount{Secret: "a", Keys: []string{"ok", "a/b", ""}}),
			[]string{"secret_mounts[0].keys[1]: key must consist of", "secret_mounts[0].keys[2]: key must not be empty"}},
		{"reserved key", mount(&herdv1.SecretMount{Secret: "a", Keys: []string{"..data"}}),
			[]string{`secret_mounts[0].keys[0]: a mounted key must not start with ".."`}},
		{"duplicate key", mount(&herdv1.SecretMount{Secret: "a", Keys: []string{"k", "k"}}),
			[]string{`secret_mounts[0].keys[1]: duplicate key "k" (also keys[0])`}},
		{"mode too large", mount(&herdv1.SecretMount{Secret: "a", Mode: u32(0o4755)}),
			[]string{"secret_mounts[0].mode: must be at most 0777", "got 04755"}},
		{"too many mounts", func(_ *herdv1.PodSpec, c *herdv1.ContainerSpec) {
			for i := range MaxSecretMounts + 1 {
				c.SecretMounts = append(c.SecretMounts, &herdv1.SecretMount{Secret: "s", Path: "/s/" + strings.Repeat("x", i+1)})
			}
		}, []string{"containers[0].secret_mounts: at most 32 secret mounts, got 33"}},
		{"bad env name", envs(&herdv1.SecretEnv{Name: "1X", Secret: "a", Key: "k"}),
			[]string{`containers[0].secret_env[0].name: invalid environment variable name "1X"`}},
		{"duplicate env", envs(&herdv1.SecretEnv{Name: "X", Secret: "a", Key: "k"}, &herdv1.SecretEnv{Name: "X", Secret: "b", Key: "k"}),
			[]string{`secret_env[1].name: duplicate variable "X" (also secret_env[0])`}},
		{"env also plain", envs(&herdv1.SecretEnv{Name: "PLAIN", Secret: "a", Key: "k"}),
			[]string{`secret_env[0].name: variable "PLAIN" is also set in env`}},
		{"env bad ref and key", envs(&herdv1.SecretEnv{Name: "X", Secret: "a/b/c", Key: "a/b"}),
			[]string{"secret_env[0].secret: invalid secret reference", "secret_env[0].key: key must consist of"}},
		{"env no key", envs(&herdv1.SecretEnv{Name: "X", Secret: "a"}), []string{"secret_env[0].key: key must not be empty"}},
		{"nil env", envs(nil), []string{"secret_env[0]: secret env is empty"}},
		{"pull secret", func(s *herdv1.PodSpec, _ *herdv1.ContainerSpec) { s.ImagePullSecret = "x/y/z" },
			[]string{"image_pull_secret: invalid secret reference"}},
		{"too many secrets", func(_ *herdv1.PodSpec, c *herdv1.ContainerSpec) {
			for i := range MaxSecretsPerContainer + 1 {
				c.SecretEnv = append(c.SecretEnv, &herdv1.SecretEnv{Name: "V" + strings.Repeat("X", i), Secret: fmt.Sprintf("s%d", i), Key: "k"})
			}
		}, []string{"containers[0]: uses 65 distinct secrets, more than 64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base(tt.mut)
			errs := ValidatePod(s)
			if len(tt.want) == 0 {
				if len(errs) != 0 {
					t.Fatalf("ValidatePod = %v, want no error", errs)
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("ValidatePod = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(errs.Error(), w) {
					t.Errorf("ValidatePod = %v\nwant it to contain %q", errs, w)
				}
			}
		})
	}
}

func TestSecretHelpers(t *testing.T) {
	if got := SecretMountPath(&herdv1.SecretMount{Secret: "prod/db"}); got != "/run/secrets/db" {
		t.Errorf("default path = %q", got)
	}
	if got := SecretMountPath(&herdv1.SecretMount{Secret: "db", Path: "/x"}); got != "/x" {
		t.Errorf("explicit path = %q", got)
	}
	if got := SecretMountMode(&herdv1.SecretMount{}); got != 0o400 {
		t.Errorf("default mode = %#o", got)
	}
	if got := SecretMountMode(&herdv1.SecretMount{Mode: u32(0)}); got != 0 {
		t.Errorf("explicit mode 0 = %#o", got)
	}
	s := &herdv1.PodSpec{
		Namespace:       "prod",
		ImagePullSecret: "reg",
		Containers: []*herdv1.ContainerSpec{
			{SecretMounts: []*herdv1.SecretMount{{Secret: "db"}, {Secret: "prod/db", Path: "/x"}, {Secret: "default/x"}}},
			{SecretEnv: []*herdv1.SecretEnv{{Name: "A", Secret: "prod/api", Key: "k"}}},
		},
	}
	var got []string
	for _, r := range PodSecretRefs(s) {
		got = append(got, r.String())
	}
	// (default/x is another namespace's: invalid, so not listed)
	if want := "prod/api prod/db prod/reg"; strings.Join(got, " ") != want {
		t.Errorf("PodSecretRefs = %v, want %s", got, want)
	}
	got = nil
	for _, r := range ContainerSecretRefs(s, s.Containers[1]) {
		got = append(got, r.String())
	}
	if want := "prod/api prod/reg"; strings.Join(got, " ") != want {
		t.Errorf("ContainerSecretRefs = %v, want %s", got, want)
	}
}

// A reference in a pod is relative to the pod's namespace, and a pod may
// name no other.
func TestParsePodSecretRef(t *testing.T) {
	tests := []struct {
		podNS, in, want, err string
	}{
		{"", "db", "default/db", ""},
		{"default", "default/db", "default/db", ""},
		{"prod", "db", "prod/db", ""},
		{"prod", "prod/db", "prod/db", ""},
		{"prod", "default/db", "", `a pod in namespace "prod" may use only secrets of its own namespace`},
		{"", "prod/db", "", `a pod in namespace "default" may use only secrets of its own namespace`},
		{"prod", "", "", "must not be empty"},
		{"prod", "x/DB", "", "name"},
	}
	for _, tt := range tests {
		t.Run(tt.podNS+":"+tt.in, func(t *testing.T) {
			got, err := ParsePodSecretRef(&herdv1.PodSpec{Namespace: tt.podNS}, tt.in)
			checkErr(t, err, tt.err)
			if err == nil && got.String() != tt.want {
				t.Errorf("ParsePodSecretRef(%q in %q) = %s, want %s", tt.in, tt.podNS, got, tt.want)
			}
		})
	}
}

// ValidatePod refuses another namespace's secret at the field that names
// it, and a namespace that is not a label.
func TestValidatePodNamespace(t *testing.T) {
	pod := func(ns string, mut func(*herdv1.PodSpec)) *herdv1.PodSpec {
		s := &herdv1.PodSpec{Name: "web", Namespace: ns, Containers: []*herdv1.ContainerSpec{{Name: "app", Image: "busybox:1"}}}
		if mut != nil {
			mut(s)
		}
		return s
	}
	tests := []struct {
		name string
		s    *herdv1.PodSpec
		path string // "" when valid
	}{
		{"default", pod("", nil), ""},
		{"named", pod("prod", nil), ""},
		{"bad namespace", pod("Prod", nil), "namespace"},
		{"mount other", pod("prod", func(s *herdv1.PodSpec) {
			s.Containers[0].SecretMounts = []*herdv1.SecretMount{{Secret: "default/db"}}
		}), "containers[0].secret_mounts[0].secret"},
		{"env other", pod("", func(s *herdv1.PodSpec) {
			s.Containers[0].SecretEnv = []*herdv1.SecretEnv{{Name: "P", Secret: "prod/db", Key: "k"}}
		}), "containers[0].secret_env[0].secret"},
		{"pull other", pod("a", func(s *herdv1.PodSpec) { s.ImagePullSecret = "b/reg" }), "image_pull_secret"},
		{"mount own", pod("prod", func(s *herdv1.PodSpec) {
			s.Containers[0].SecretMounts = []*herdv1.SecretMount{{Secret: "db"}, {Secret: "prod/tls"}}
		}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidatePod(tt.s)
			if tt.path == "" {
				if len(errs) > 0 {
					t.Fatalf("ValidatePod: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Path.String() != tt.path {
				t.Fatalf("ValidatePod = %v, want one error at %s", errs, tt.path)
			}
		})
	}
}

// "default" and empty are one namespace: they hash alike, others do not.
func TestHashNamespace(t *testing.T) {
	s := func(ns string) *herdv1.PodSpec {
		return &herdv1.PodSpec{Name: "web", Namespace: ns, Containers: []*herdv1.ContainerSpec{{Name: "app", Image: "busybox:1"}}}
	}
	if Hash(s("")) != Hash(s("default")) {
		t.Error(`"" and "default" hash differently`)
	}
	if Hash(s("")) == Hash(s("prod")) {
		t.Error(`"" and "prod" hash alike`)
	}
}

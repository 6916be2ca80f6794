package spec

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

func TestParseVolumeSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"1Mi", 1 << 20, ""},
		{"1048576", 1 << 20, ""},
		{"1.5Gi", 3 << 29, ""},
		{"10G", 10_000_000_000, ""},
		{"64Ti", MaxVolumeBytes, ""},
		{"", 0, "is required"},
		{"abc", 0, `invalid size "abc"`},
		{"0", 0, "greater than zero"},
		{"-1Mi", 0, "greater than zero"},
		{"0.5", 0, "not a whole number of bytes"},
		{"1Ki", 0, `size "1Ki" is below the minimum of 1Mi`},
		{"1048575", 0, "below the minimum of 1Mi"},
		{"65Ti", 0, `size "65Ti" is above the maximum of 64Ti`},
		{"100Ei", 0, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVolumeSize(tt.in)
			checkErr(t, err, tt.err)
			if err == nil && got != tt.want {
				t.Errorf("ParseVolumeSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "memory") {
				t.Errorf("ParseVolumeSize(%q): %v: a volume size is no memory quantity", tt.in, err)
			}
		})
	}
}

func validVolume() *herdv1.VolumeSpec {
	return &herdv1.VolumeSpec{Name: "data", Size: "1Gi"}
}

func TestValidateVolume(t *testing.T) {
	size := func(q string) func(*herdv1.VolumeSpec) { return func(s *herdv1.VolumeSpec) { s.Size = q } }
	tests := []mutationCase[herdv1.VolumeSpec]{
		{name: "valid", mutate: func(*herdv1.VolumeSpec) {}},
		{name: "namespace", mutate: func(s *herdv1.VolumeSpec) { s.Namespace = "prod" }},
		{name: "smallest", mutate: size("1Mi")},
		{name: "largest", mutate: size("64Ti")},
		{name: "no size", mutate: size(""), wantPath: "size", wantMsg: "is required"},
		{name: "size abc", mutate: size("abc"), wantPath: "size", wantMsg: `invalid size "abc"`},
		{name: "size 0", mutate: size("0"), wantPath: "size", wantMsg: "greater than zero"},
		{name: "size 1Ki", mutate: size("1Ki"), wantPath: "size", wantMsg: "below the minimum of 1Mi"},
		{name: "size 65Ti", mutate: size("65Ti"), wantPath: "size", wantMsg: "above the maximum of 64Ti"},
		{name: "no name", mutate: func(s *herdv1.VolumeSpec) { s.Name = "" }, wantPath: "name", wantMsg: "must not be empty"},
		{name: "uppercase name", mutate: func(s *herdv1.VolumeSpec) { s.Name = "Data" }, wantPath: "name", wantMsg: "RFC 1123"},
		{name: "underscore name", mutate: func(s *herdv1.VolumeSpec) { s.Name = "my_data" }, wantPath: "name", wantMsg: "RFC 1123"},
		{name: "long name", mutate: func(s *herdv1.VolumeSpec) { s.Name = strings.Repeat("a", 64) }, wantPath: "name", wantMsg: "RFC 1123"},
		{name: "bad namespace", mutate: func(s *herdv1.VolumeSpec) { s.Namespace = "Prod" }, wantPath: "namespace", wantMsg: "RFC 1123"},
	}
	runMutations(t, tests, validVolume, ValidateVolume, true)

	if errs := ValidateVolume(nil); len(errs) != 1 || errs[0].Msg != "spec is required" {
		t.Errorf("nil spec: %v", errs)
	}
	if ns := VolumeNamespace(validVolume()); ns != DefaultVolumeNamespace {
		t.Errorf("VolumeNamespace without one = %q", ns)
	}
}

func TestCheckVolumeResize(t *testing.T) {
	if err := CheckVolumeResize(1<<30, 1<<30, "1Gi", "1024Mi"); err != nil {
		t.Errorf("same size: %v", err)
	}
	if err := CheckVolumeResize(1<<30, 2<<30, "1Gi", "2Gi"); err != nil {
		t.Errorf("grow: %v", err)
	}
	err := CheckVolumeResize(2<<30, 1<<30, "2Gi", "1Gi")
	checkErr(t, err, "a volume cannot shrink (from 2Gi to 1Gi)")
	checkErr(t, err, "herdctl volume backup and restore")
}

func TestValidateSubPath(t *testing.T) {
	tests := []struct{ in, err string }{
		{"", ""},
		{"a", ""},
		{"app/logs", ""},
		{"..a", ""}, // a name that starts with dots stays inside
		{"/abs", "must be a relative path"},
		{"..", "must not leave the volume"},
		{"../x", "must not leave the volume"},
		{"a/../b", "must be a clean path"},
		{"a/..", "must be a clean path"},
		{"./a", "must be a clean path"},
		{"a//b", "must be a clean path"},
		{"a/", "must be a clean path"},
		{"a\x00b", "NUL"},
		{strings.Repeat("a", maxMountPathLength+1), "at most 1024 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) { checkErr(t, ValidateSubPath(tt.in), tt.err) })
	}
}

// validVolumePod mounts a volume and an empty_dir and has a config file
// and a secret mount (at /run/secrets/db).
func validVolumePod() *herdv1.PodSpec {
	return &herdv1.PodSpec{
		Name: "web",
		EmptyDirs: []*herdv1.EmptyDir{
			{Name: "work"},
			{Name: "fast", Medium: EmptyDirMemory, SizeLimit: "64Mi"},
		},
		Containers: []*herdv1.ContainerSpec{{
			Name: "main", Image: "nginx:1.27",
			VolumeMounts: []*herdv1.VolumeMount{
				{Volume: "data", Path: "/data"},
				{EmptyDir: "work", Path: "/work"},
			},
			ConfigFiles:  []*herdv1.ConfigFile{{Path: "/etc/app/app.conf", Content: "x = 1\n"}},
			SecretMounts: []*herdv1.SecretMount{{Secret: "db"}},
		}},
	}
}

func TestValidatePodVolumes(t *testing.T) {
	type pod = herdv1.PodSpec
	mount := func(i int, f func(*herdv1.VolumeMount)) func(*pod) {
		return func(s *pod) { f(s.Containers[0].VolumeMounts[i]) }
	}
	mountPath := func(i int, p string) func(*pod) {
		return mount(i, func(m *herdv1.VolumeMount) { m.Path = p })
	}
	subPath := func(p string) func(*pod) {
		return mount(0, func(m *herdv1.VolumeMount) { m.SubPath = p })
	}
	config := func(f func(*herdv1.ConfigFile)) func(*pod) {
		return func(s *pod) { f(s.Containers[0].ConfigFiles[0]) }
	}
	configPath := func(p string) func(*pod) {
		return config(func(f *herdv1.ConfigFile) { f.Path = p })
	}
	mode := func(m uint32) func(*pod) {
		return config(func(f *herdv1.ConfigFile) { f.Mode = &m })
	}
	emptyDir := func(i int, f func(*herdv1.EmptyDir)) func(*pod) {
		return func(s *pod) { f(s.EmptyDirs[i]) }
	}
	const (
		m0 = "containers[0].volume_mounts[0]"
		m1 = "containers[0].volume_mounts[1]"
		f0 = "containers[0].config_files[0].path"
	)
	tests := []mutationCase[pod]{
		{name: "valid", mutate: func(*pod) {}},
		{name: "valid read-only volume with a sub_path", mutate: mount(0, func(m *herdv1.VolumeMount) { m.ReadOnly = true; m.SubPath = "app/logs" })},
		{name: "valid sized disk empty_dir", mutate: emptyDir(0, func(d *herdv1.EmptyDir) { d.Medium = EmptyDirDisk; d.SizeLimit = "1Mi" })},
		{name: "valid one empty_dir in two containers", mutate: func(s *pod) {
			s.Containers = append(s.Containers, &herdv1.ContainerSpec{Name: "side", Image: "busybox",
				VolumeMounts: []*herdv1.VolumeMount{{EmptyDir: "work", Path: "/work"}, {EmptyDir: "fast", Path: "/fast"}}})
		}},
		{name: "valid config files in two directories", mutate: func(s *pod) {
			s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles,
				&herdv1.ConfigFile{Path: "/etc/app/other.conf"}, &herdv1.ConfigFile{Path: "/etc/nginx/nginx.conf", Content: "x"})
		}},
		{name: "valid mode 0777", mutate: mode(0o777)},
		{name: "valid mode 0", mutate: mode(0)},
		{name: "valid sibling paths", mutate: mountPath(1, "/data2")},

		{name: "volume and empty_dir", mutate: mount(1, func(m *herdv1.VolumeMount) { m.Volume = "data" }),
			wantPath: m1, wantMsg: "only one of volume and empty_dir may be set"},
		{name: "neither volume nor empty_dir", mutate: mount(1, func(m *herdv1.VolumeMount) { m.EmptyDir = "" }),
			wantPath: m1, wantMsg: "one of volume and empty_dir is required"},
		{name: "bad volume name", mutate: mount(0, func(m *herdv1.VolumeMount) { m.Volume = "Data" }),
			wantPath: m0 + ".volume", wantMsg: "a volume of the pod's namespace, by name"},
		{name: "unknown empty_dir", mutate: mount(1, func(m *herdv1.VolumeMount) { m.EmptyDir = "nope" }),
			wantPath: m1 + ".empty_dir", wantMsg: `the pod has no empty_dir "nope"`},
		{name: "read-only empty_dir", mutate: mount(1, func(m *herdv1.VolumeMount) { m.ReadOnly = true }),
			wantPath: m1 + ".read_only", wantMsg: "mount it read-write"},
		{name: "sub_path absolute", mutate: subPath("/etc"), wantPath: m0 + ".sub_path", wantMsg: "must be a relative path"},
		{name: "sub_path ..", mutate: subPath(".."), wantPath: m0 + ".sub_path", wantMsg: `must not leave the volume (no "..")`},
		{name: "sub_path ../x", mutate: subPath("../x"), wantPath: m0 + ".sub_path", wantMsg: "must not leave the volume"},
		{name: "sub_path unclean", mutate: subPath("a/../b"), wantPath: m0 + ".sub_path", wantMsg: "must be a clean path"},

		{name: "mount path in /proc", mutate: mountPath(1, "/proc/x"), wantPath: m1 + ".path", wantMsg: "must not be in /proc"},
		{name: "mount path /sys", mutate: mountPath(1, "/sys"), wantPath: m1 + ".path", wantMsg: "must not be in /sys"},
		{name: "mount path in /dev", mutate: mountPath(1, "/dev/shm"), wantPath: m1 + ".path", wantMsg: "must not be in /dev"},
		{name: "mount path /", mutate: mountPath(1, "/"), wantPath: m1 + ".path", wantMsg: `must not be "/"`},
		{name: "mount path unclean", mutate: mountPath(1, "/work/../data"), wantPath: m1 + ".path", wantMsg: `must be a clean path`},
		{name: "mount path trailing slash", mutate: mountPath(1, "/work/"), wantPath: m1 + ".path", wantMsg: `use "/work"`},
		{name: "mount path relative", mutate: mountPath(1, "work"), wantPath: m1 + ".path", wantMsg: "must be an absolute path"},
		{name: "mount path empty", mutate: mountPath(1, ""), wantPath: m1 + ".path", wantMsg: "must not be empty"},
		{name: "mount path above resolv.conf", mutate: mountPath(1, "/etc"), wantPath: m1 + ".path", wantMsg: "/etc/resolv.conf"},

		{name: "two mounts at one path", mutate: mountPath(1, "/data"), wantPath: m1 + ".path", wantMsg: "/data is also the path of volume_mounts[0]"},
		{name: "a mount inside an earlier one", mutate: mountPath(1, "/data/work"),
			wantPath: m1 + ".path", wantMsg: "/data/work is inside /data, the path of volume_mounts[0]"},
		{name: "a mount around an earlier one", mutate: mountPath(0, "/work/data"),
			wantPath: m1 + ".path", wantMsg: "/work contains /work/data, the path of volume_mounts[0]"},
		{name: "a volume mount inside a secret mount", mutate: mountPath(1, "/run/secrets/db/cache"),
			wantPath: "containers[0].secret_mounts[0].path", wantMsg: "/run/secrets/db contains /run/secrets/db/cache, the path of volume_mounts[1]"},
		{name: "a volume mount at a secret mount", mutate: mountPath(1, "/run/secrets/db"),
			wantPath: "containers[0].secret_mounts[0].path", wantMsg: "/run/secrets/db is also the path of volume_mounts[1]"},
		{name: "a secret mount inside a volume mount", mutate: func(s *pod) { s.Containers[0].SecretMounts[0].Path = "/data/creds" },
			wantPath: "containers[0].secret_mounts[0].path", wantMsg: "/data/creds is inside /data, the path of volume_mounts[0]"},
		{name: "mounts of two containers may share a path", mutate: func(s *pod) {
			s.Containers = append(s.Containers, &herdv1.ContainerSpec{Name: "side", Image: "busybox",
				VolumeMounts: []*herdv1.VolumeMount{{Volume: "data", Path: "/data/x", ReadOnly: true}},
				ConfigFiles:  []*herdv1.ConfigFile{{Path: "/work/app.conf"}}})
		}},

		{name: "config file in /", mutate: configPath("/app.conf"), wantPath: f0, wantMsg: "must be in a directory of its own, not in /"},
		{name: "config file in /proc", mutate: configPath("/proc/app.conf"), wantPath: f0, wantMsg: "must not be in /proc"},
		{name: "config file /proc", mutate: configPath("/proc"), wantPath: f0, wantMsg: "must not be in /proc"},
		{name: "config file relative", mutate: configPath("etc/app.conf"), wantPath: f0, wantMsg: "must be an absolute path"},
		{name: "config file unclean", mutate: configPath("/etc/app/./app.conf"), wantPath: f0, wantMsg: "must be a clean path"},
		{name: "config file in /etc", mutate: configPath("/etc/app.conf"), wantPath: f0, wantMsg: "directory must not be /etc/resolv.conf or a directory above it"},
		{name: "config file named ..data", mutate: configPath("/etc/app/..data"), wantPath: f0, wantMsg: `must not start with ".."`},
		{name: "config file in a volume mount's directory", mutate: configPath("/data/app.conf"),
			wantPath: f0, wantMsg: "/data is also the path of volume_mounts[0]"},
		{name: "config file below a volume mount", mutate: configPath("/work/conf/app.conf"),
			wantPath: f0, wantMsg: "/work/conf is inside /work, the path of volume_mounts[1]"},
		{name: "config file directory around a volume mount", mutate: mountPath(1, "/etc/app/cache"),
			wantPath: f0, wantMsg: "/etc/app contains /etc/app/cache, the path of volume_mounts[1]"},
		{name: "config file in a secret mount", mutate: configPath("/run/secrets/db/app.conf"),
			wantPath: "containers[0].secret_mounts[0].path", wantMsg: "/run/secrets/db is also the path of the directory of config_files[0]"},
		{name: "duplicate config file", mutate: func(s *pod) {
			s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles, &herdv1.ConfigFile{Path: "/etc/app/app.conf", Content: "y"})
		}, wantPath: "containers[0].config_files[1].path", wantMsg: "duplicate config file /etc/app/app.conf (also config_files[0])"},
		{name: "empty config file entry", mutate: func(s *pod) { s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles, nil) },
			wantPath: "containers[0].config_files[1]", wantMsg: "config file is empty"},
		{name: "mode 01777", mutate: mode(0o1777), wantPath: "containers[0].config_files[0].mode", wantMsg: "must be at most 0777"},
		{name: "mode 04755", mutate: mode(0o4755), wantPath: "containers[0].config_files[0].mode", wantMsg: "got 04755"},
		{name: "config content of 1 MiB", mutate: func(s *pod) {
			s.Containers[0].ConfigFiles[0].Content = strings.Repeat("a", MaxConfigBytes)
		}},
		{name: "config content above 1 MiB in all", mutate: func(s *pod) {
			half := strings.Repeat("a", MaxConfigBytes/2)
			s.Containers[0].ConfigFiles[0].Content = half
			s.Containers = append(s.Containers, &herdv1.ContainerSpec{Name: "side", Image: "busybox",
				ConfigFiles: []*herdv1.ConfigFile{{Path: "/etc/side/a", Content: half}, {Path: "/etc/side/b", Content: "x"}}})
		}, wantPath: "containers", wantMsg: fmt.Sprintf("config file content is %d bytes in all: at most 1 MiB per pod", MaxConfigBytes+1)},

		{name: "duplicate empty_dir", mutate: emptyDir(1, func(d *herdv1.EmptyDir) { d.Name = "work" }),
			wantPath: "empty_dirs[1].name", wantMsg: `duplicate empty_dir name "work" (also empty_dirs[0])`},
		{name: "bad empty_dir name", mutate: func(s *pod) { s.EmptyDirs[1].Name = "Fast" }, wantPath: "empty_dirs[1].name", wantMsg: "RFC 1123"},
		{name: "empty_dir medium ssd", mutate: emptyDir(0, func(d *herdv1.EmptyDir) { d.Medium = "ssd" }),
			wantPath: "empty_dirs[0].medium", wantMsg: `must be "disk" or "memory", got "ssd"`},
		{name: "memory empty_dir without size_limit", mutate: emptyDir(1, func(d *herdv1.EmptyDir) { d.SizeLimit = "" }),
			wantPath: "empty_dirs[1].size_limit", wantMsg: "is required for a memory empty_dir"},
		{name: "empty_dir size_limit below 1Mi", mutate: emptyDir(0, func(d *herdv1.EmptyDir) { d.SizeLimit = "512Ki" }),
			wantPath: "empty_dirs[0].size_limit", wantMsg: "below the minimum of 1Mi"},
		{name: "memory empty_dir size_limit below 1Mi", mutate: emptyDir(1, func(d *herdv1.EmptyDir) { d.SizeLimit = "1Ki" }),
			wantPath: "empty_dirs[1].size_limit", wantMsg: "below the minimum of 1Mi"},
		{name: "empty_dir size_limit abc", mutate: emptyDir(0, func(d *herdv1.EmptyDir) { d.SizeLimit = "abc" }),
			wantPath: "empty_dirs[0].size_limit", wantMsg: `invalid size "abc"`},
		{name: "empty empty_dir entry", mutate: func(s *pod) { s.EmptyDirs = append(s.EmptyDirs, nil) },
			wantPath: "empty_dirs[2]", wantMsg: "empty_dir is empty"},
		{name: "too many empty_dirs", mutate: func(s *pod) {
			for i := len(s.EmptyDirs); i <= MaxEmptyDirs; i++ {
				s.EmptyDirs = append(s.EmptyDirs, &herdv1.EmptyDir{Name: fmt.Sprintf("d%d", i)})
			}
		}, wantPath: "empty_dirs", wantMsg: "at most 16 empty_dirs, got 17"},
		{name: "too many volume mounts", mutate: func(s *pod) {
			for i := len(s.Containers[0].VolumeMounts); i <= MaxVolumeMounts; i++ {
				s.Containers[0].VolumeMounts = append(s.Containers[0].VolumeMounts, &herdv1.VolumeMount{Volume: "data", Path: fmt.Sprintf("/v%d", i), ReadOnly: true})
			}
		}, wantPath: "containers[0].volume_mounts", wantMsg: "at most 32 volume mounts, got 33"},
		{name: "too many config files", mutate: func(s *pod) {
			for i := len(s.Containers[0].ConfigFiles); i <= MaxConfigFiles; i++ {
				s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles, &herdv1.ConfigFile{Path: fmt.Sprintf("/etc/app/f%d", i)})
			}
		}, wantPath: "containers[0].config_files", wantMsg: "at most 64 config files, got 65"},
	}
	runMutations(t, tests, validVolumePod, ValidatePod, true)
}

func TestConfigDirs(t *testing.T) {
	list := []*herdv1.ConfigFile{{Path: "/etc/b/1"}, {Path: "/etc/a/1"}, {Path: "/etc/b/2"}}
	dirs, files := ConfigDirs(list)
	if strings.Join(dirs, " ") != "/etc/b /etc/a" {
		t.Errorf("dirs = %q, want them in order of first appearance", dirs)
	}
	if len(files["/etc/b"]) != 2 || files["/etc/b"][1] != list[2] || len(files["/etc/a"]) != 1 || files["/etc/a"][0] != list[1] {
		t.Errorf("files = %v", files)
	}
}

func TestConfigOnlyChange(t *testing.T) {
	type pod = herdv1.PodSpec
	mode := func(m uint32) *uint32 { return &m }
	tests := []struct {
		name   string
		a, b   func(*pod)
		inline bool
	}{
		{name: "content", b: func(s *pod) { s.Containers[0].ConfigFiles[0].Content = "x = 2\n" }, inline: true},
		{name: "mode", b: func(s *pod) { s.Containers[0].ConfigFiles[0].Mode = mode(0o600) }, inline: true},
		{name: "content and mode of every file", a: func(s *pod) {
			s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles, &herdv1.ConfigFile{Path: "/etc/other/f", Content: "a"})
		}, b: func(s *pod) {
			s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles, &herdv1.ConfigFile{Path: "/etc/other/f", Content: "b", Mode: mode(0o640)})
			s.Containers[0].ConfigFiles[0].Content = ""
		}, inline: true},
		{name: "default mode and an explicit 0644", b: func(s *pod) { s.Containers[0].ConfigFiles[0].Mode = mode(DefaultConfigMode) }, inline: true},
		{name: "default namespace and none", b: func(s *pod) { s.Namespace = DefaultPodNamespace; s.Containers[0].ConfigFiles[0].Content = "y" }, inline: true},
		{name: "path", b: func(s *pod) { s.Containers[0].ConfigFiles[0].Path = "/etc/app/renamed.conf" }},
		{name: "path and content", b: func(s *pod) {
			s.Containers[0].ConfigFiles[0].Path = "/etc/app/renamed.conf"
			s.Containers[0].ConfigFiles[0].Content = "y"
		}},
		{name: "image", b: func(s *pod) { s.Containers[0].Image = "nginx:1.28"; s.Containers[0].ConfigFiles[0].Content = "y" }},
		{name: "new file", b: func(s *pod) {
			s.Containers[0].ConfigFiles = append(s.Containers[0].ConfigFiles, &herdv1.ConfigFile{Path: "/etc/app/new.conf"})
		}},
		{name: "file removed", b: func(s *pod) { s.Containers[0].ConfigFiles = nil }},
		{name: "restart_on_config_change", b: func(s *pod) { s.RestartOnConfigChange = true; s.Containers[0].ConfigFiles[0].Content = "y" }},
		{name: "volume mount", b: func(s *pod) { s.Containers[0].VolumeMounts[0].ReadOnly = true }},
		{name: "empty_dir", b: func(s *pod) { s.EmptyDirs[1].SizeLimit = "128Mi" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := validVolumePod(), validVolumePod()
			if tt.a != nil {
				tt.a(a)
			}
			tt.b(b)
			a0, b0 := proto.Clone(a), proto.Clone(b)
			if got := ConfigOnlyChange(a, b); got != tt.inline {
				t.Errorf("ConfigOnlyChange = %v, want %v", got, tt.inline)
			}
			if got := ConfigOnlyChange(b, a); got != tt.inline {
				t.Errorf("ConfigOnlyChange reversed = %v, want %v", got, tt.inline)
			}
			if !proto.Equal(a, a0) || !proto.Equal(b, b0) {
				t.Errorf("ConfigOnlyChange changed its arguments")
			}
		})
	}
}

package provider

import "testing"

func TestQuietUnreadLogs(t *testing.T) {
	const cookie = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
	cases := []struct {
		name string
		env  map[string]string
		want map[string]string // the SDK variables afterwards ("" : unset)
	}{
		{
			name: "started by the CLI without TF_LOG: the SDK loggers are off",
			env:  map[string]string{pluginCookieVar: cookie},
			want: map[string]string{"TF_LOG_SDK": "off", "TF_LOG_SDK_PROTO": "off", "TF_LOG_SDK_FRAMEWORK": "off", "TF_LOG_PROVIDER_HERD": "off"},
		},
		{
			name: "TF_LOG=off is no reader either",
			env:  map[string]string{pluginCookieVar: cookie, "TF_LOG": "OFF"},
			want: map[string]string{"TF_LOG_SDK": "off", "TF_LOG_SDK_PROTO": "off", "TF_LOG_SDK_FRAMEWORK": "off", "TF_LOG_PROVIDER_HERD": "off"},
		},
		{
			name: "a level set by the user is kept",
			env:  map[string]string{pluginCookieVar: cookie, "TF_LOG_SDK_FRAMEWORK": "debug"},
			want: map[string]string{"TF_LOG_SDK": "off", "TF_LOG_SDK_PROTO": "off", "TF_LOG_SDK_FRAMEWORK": "debug", "TF_LOG_PROVIDER_HERD": "off"},
		},
		{
			name: "TF_LOG set: untouched",
			env:  map[string]string{pluginCookieVar: cookie, "TF_LOG": "trace"},
			want: map[string]string{},
		},
		{
			name: "TF_LOG_PROVIDER set: untouched",
			env:  map[string]string{pluginCookieVar: cookie, "TF_LOG_PROVIDER": "debug"},
			want: map[string]string{},
		},
		{
			name: "not started by a CLI (debug mode, tests): untouched",
			env:  map[string]string{},
			want: map[string]string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			quietUnreadLogs(func(k string) string { return env[k] }, func(k, v string) error { env[k] = v; return nil })
			for _, v := range sdkLogLevelVars {
				if env[v] != tc.want[v] {
					t.Errorf("%s = %q, want %q", v, env[v], tc.want[v])
				}
			}
		})
	}
}

func TestRelaxGC(t *testing.T) {
	const cookie = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
	cases := []struct {
		name string
		env  map[string]string
		want int // GC percent set; 0: none
	}{
		{"started by the CLI", map[string]string{pluginCookieVar: cookie}, cliGCPercent},
		{"GOGC chosen by the user", map[string]string{pluginCookieVar: cookie, "GOGC": "100"}, 0},
		{"not started by a CLI", map[string]string{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := 0
			relaxGC(func(k string) string { return tc.env[k] }, func(p int) int { got = p; return 100 })
			if got != tc.want {
				t.Errorf("GC percent set to %d, want %d", got, tc.want)
			}
		})
	}
}

package provider

import (
	"os"
	"strings"
	"sync"
)

// The plugin SDK logs every request, and the framework every attribute it
// plans, at trace level, encoded as JSON on the plugin's stderr — whatever
// TF_LOG says, because the SDK loggers default to trace and leave the
// filtering to the CLI, which parses each line and then drops it. On a plan
// of hundreds of resources that is a good part of the provider's CPU time
// (and of the CLI's), spent on logs nobody reads.
//
// sdkLogLevelVars are the variables that set those loggers' levels.
var sdkLogLevelVars = []string{
	"TF_LOG_SDK",
	"TF_LOG_SDK_PROTO",
	"TF_LOG_SDK_FRAMEWORK",
	"TF_LOG_PROVIDER_HERD",
}

// pluginCookieVar is set by Terraform and OpenTofu (go-plugin's handshake)
// in the environment of a provider they start.
const pluginCookieVar = "TF_PLUGIN_MAGIC_COOKIE"

var quietLogsOnce, relaxGCDone sync.Once

var getenvOS = os.Getenv

// quietUnreadLogs turns the SDK's loggers off when the CLI that started the
// provider discards what they write: neither TF_LOG nor TF_LOG_PROVIDER is
// set (or they say "off"). A level the user set explicitly is kept, and a
// provider not started by a CLI (debug mode, tests in process) logs as
// before.
func quietUnreadLogs(getenv func(string) string, setenv func(string, string) error) {
	if getenv(pluginCookieVar) == "" {
		return
	}
	for _, v := range []string{"TF_LOG", "TF_LOG_PROVIDER"} {
		if l := getenv(v); l != "" && !strings.EqualFold(l, "off") {
			return
		}
	}
	for _, v := range sdkLogLevelVars {
		if getenv(v) == "" {
			_ = setenv(v, "off")
		}
	}
}

func quietUnreadLogsOnce() {
	quietLogsOnce.Do(func() { quietUnreadLogs(os.Getenv, os.Setenv) })
}

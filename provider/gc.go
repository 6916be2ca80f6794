package provider

import "runtime/debug"

// cliGCPercent is the GC target of a provider process a CLI started. The
// framework allocates a few megabytes per resource and request (decoded
// values, paths, types) and keeps almost none of it, so with Go's default
// of 100 the collector ran back to back on a heap of a few megabytes:
// about a quarter of the CPU time of a plan of 500 pods. At 400 the heap
// may grow to five times what is live (a few hundred megabytes at the
// CLI's default parallelism of 10), for as long as the plan lasts.
const cliGCPercent = 400

// relaxGC sets cliGCPercent when a CLI started the provider and the user
// did not choose a GOGC.
func relaxGC(getenv func(string) string, setGCPercent func(int) int) {
	if getenv(pluginCookieVar) == "" || getenv("GOGC") != "" {
		return
	}
	setGCPercent(cliGCPercent)
}

func relaxGCOnce() { relaxGCDone.Do(func() { relaxGC(getenvOS, debug.SetGCPercent) }) }

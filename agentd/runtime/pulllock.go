package runtime

import "context"

// lockContext is lock that gives up when ctx ends: a pull waiting behind
// another pull of the same image (which may take until the watchdog
// cancels it) must not hold up the deletion of its pod. The abandoned
// wait takes the lock when it comes and releases it at once.
func (k *keyedMutex) lockContext(ctx context.Context, key string) (func(), error) {
	got := make(chan func(), 1)
	go func() { got <- k.lock(key) }()
	select {
	case unlock := <-got:
		return unlock, nil
	case <-ctx.Done():
		go func() { (<-got)() }()
		return nil, ctx.Err()
	}
}

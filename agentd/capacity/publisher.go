package capacity

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Defaults for Publisher.
const (
	// DefaultDebounce gathers the changes of a burst (a pod created, its
	// status filled in) into one publication.
	DefaultDebounce = 100 * time.Millisecond
	// DefaultRefresh re-reads the node even without a change: readiness
	// follows containerd and the store, which send no events.
	DefaultRefresh = 10 * time.Second
	retryInterval  = time.Second
)

// Local is where the entry goes (agentd/cluster.Cluster).
type Local interface {
	PublishLocal(kind, key string, value []byte) error
}

// Publisher publishes this node's capacity entry on start, after pod
// changes (Changed) and every Refresh, writing only when the value
// differs from what it last wrote.
type Publisher struct {
	read func(ctx context.Context) (Info, error)
	pub  Local
	log  *slog.Logger
	// Debounce and Refresh default to DefaultDebounce and DefaultRefresh;
	// set them before Run.
	Debounce, Refresh time.Duration

	kick chan struct{}
}

// NewPublisher returns a publisher of what read reports; call Run.
func NewPublisher(read func(ctx context.Context) (Info, error), pub Local, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.Default()
	}
	return &Publisher{read: read, pub: pub, log: log, Debounce: DefaultDebounce, Refresh: DefaultRefresh, kick: make(chan struct{}, 1)}
}

// Changed notes that the node's pods changed. It never blocks (the pod
// manager calls it with its lock held); the name is not needed.
func (p *Publisher) Changed(string) {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes at once, then after changes and refreshes, until ctx
// ends.
func (p *Publisher) Run(ctx context.Context) {
	var last []byte
	refresh := time.NewTicker(p.Refresh)
	defer refresh.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		b, err := p.publish(ctx, last)
		if err == nil {
			last = b
		} else if ctx.Err() == nil {
			p.log.Warn("publish capacity", "err", err)
			retry.Reset(retryInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			// Let the rest of a burst arrive first.
			t := time.NewTimer(p.Debounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		case <-refresh.C:
		case <-retry.C:
		}
	}
}

// publish writes the entry when it differs from last and returns what is
// published now.
func (p *Publisher) publish(ctx context.Context, last []byte) ([]byte, error) {
	info, err := p.read(ctx)
	if err != nil {
		return last, fmt.Errorf("read capacity: %w", err)
	}
	b, err := info.Encode()
	if err != nil {
		return last, err
	}
	if bytes.Equal(b, last) {
		return last, nil
	}
	if err := p.pub.PublishLocal(Kind, Key, b); err != nil {
		return last, fmt.Errorf("publish capacity: %w", err)
	}
	return b, nil
}

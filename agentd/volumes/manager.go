// Package volumes keeps the node-local persistent volumes of agentd: each
// volume is an ext4 filesystem in a sparse image file, attached to a loop
// device and mounted by agentd; pods bind-mount the mounted root. The
// filesystem enforces the size: a write past it gets ENOSPC inside that
// volume only.
//
// Under the volume directory each volume has a directory named by its uid:
//
//	<uid>/volume.json  the marker and record (written atomically)
//	<uid>/disk.img     the ext4 image
//	<uid>/mnt/         the mount point
//
// A directory without a valid record is not herd's: it is never mounted,
// listed or removed. The record is written first on creation and removed
// last on deletion, so a crash midway leaves a volume that is listed (with
// a status message) and that Delete can finish.
package volumes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

// Volume phases (VolumeStatus.phase).
const (
	PhaseAvailable = "Available"
	PhaseBound     = "Bound"
)

const (
	recordFile  = "volume.json"
	recordTmp   = "volume.json.tmp"
	imageFile   = "disk.img"
	mountDir    = "mnt"
	markerValue = "volume"
)

// record is volume.json: the marker ("herd": "volume") and what the
// volume is.
type record struct {
	Herd               string    `json:"herd"`
	Namespace          string    `json:"namespace"`
	Name               string    `json:"name"`
	UID                string    `json:"uid"`
	Size               string    `json:"size"`
	SizeBytes          int64     `json:"size_bytes"`
	DeletionProtection bool      `json:"deletion_protection"`
	CreatedAt          time.Time `json:"created_at"`
}

// UsersFunc reports the pods that mount a volume: the one mounting it
// read-write (or "") and those mounting it read-only. The pod manager
// provides it; it must not call back into the Manager.
type UsersFunc func(ns, name string) (rw string, ro []string)

// Manager keeps the volumes of one node. Create it with New, then Start
// it.
//
// Locks, in the order they are taken: bindMu (pod admission holds the read
// side), applyMu (Apply and Delete), a volume's op, mu.
type Manager struct {
	dir string
	log *slog.Logger

	bindMu  sync.RWMutex
	applyMu sync.Mutex

	mu      sync.Mutex
	vols    map[string]*volume // by ns/name
	users   UsersFunc
	changed func()
	started bool
}

// volume is one volume. op serializes what mounts, grows or removes it;
// the fields below are guarded by Manager.mu.
type volume struct {
	dir string
	op  sync.Mutex

	rec       record
	message   string // why it is not usable; "" when mounted
	restoring bool
	backups   int
	gone      bool
}

func (v *volume) img() string { return filepath.Join(v.dir, imageFile) }
func (v *volume) mnt() string { return filepath.Join(v.dir, mountDir) }

func key(ns, name string) string { return ns + "/" + name }

func defaultNS(ns string) string {
	if ns == "" {
		return spec.DefaultVolumeNamespace
	}
	return ns
}

// New returns a Manager of the volumes under dir (created if missing).
func New(dir string, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("volume dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create volume dir: %w", err)
	}
	return &Manager{dir: abs, log: log, vols: map[string]*volume{}}, nil
}

// SetUsers sets the hook that reports who mounts a volume. Without one no
// volume has users.
func (m *Manager) SetUsers(f UsersFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users = f
}

// Bind takes the read side of the lock that Delete and Restore take the
// write side of: pod admission holds it while it checks and records a pod
// that mounts volumes, so that no volume goes away (or is emptied) under
// a pod being created. Call release once the pod is recorded (the Users
// hook reports it).
func (m *Manager) Bind() (release func()) {
	m.bindMu.RLock()
	var once sync.Once
	return func() { once.Do(m.bindMu.RUnlock) }
}

// SetChanged sets a hook called after a volume is created or deleted (the
// capacity publisher, which tells the schedulers where volumes are). It
// must not block or call back into the Manager.
func (m *Manager) SetChanged(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.changed = f
}

func (m *Manager) notify() {
	m.mu.Lock()
	f := m.changed
	m.mu.Unlock()
	if f != nil {
		f()
	}
}

// Names lists the node's volumes as "namespace/name", sorted: the ones
// with a valid record, mounted or not.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.vols))
	for k, v := range m.vols {
		if !v.gone {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Manager) usersOf(ns, name string) (string, []string) {
	m.mu.Lock()
	f := m.users
	m.mu.Unlock()
	if f == nil {
		return "", nil
	}
	return f(ns, name)
}

// Start loads every volume with a valid record and mounts it: after a
// reboot its image is attached and mounted again; after agentd was killed
// the mount that is still there is reused. A volume that fails to mount
// is listed with the reason in its status.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return fmt.Errorf("volume manager already started")
	}
	m.mu.Unlock()
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("read volume dir: %w", err)
	}
	vols := map[string]*volume{}
	for _, e := range entries {
		p := filepath.Join(m.dir, e.Name())
		if !e.IsDir() {
			m.log.Warn("volume dir: not a volume, leaving it alone", "path", p)
			continue
		}
		rec, err := readRecord(p, e.Name())
		if err != nil {
			m.log.Warn("volume dir: not a volume, leaving it alone", "path", p, "err", err)
			continue
		}
		k := key(rec.Namespace, rec.Name)
		if other, dup := vols[k]; dup {
			m.log.Error("volume dir: two records for one volume, leaving the second alone", "volume", k, "kept", other.dir, "path", p)
			continue
		}
		vols[k] = &volume{dir: p, rec: rec}
	}
	for k, v := range vols {
		if err := Mount(ctx, v.img(), v.mnt()); err != nil {
			v.message = fmt.Sprintf("mount failed: %v", err)
			m.log.Error("volume: mount failed", "volume", k, "uid", v.rec.UID, "err", err)
			continue
		}
		m.log.Info("volume mounted", "volume", k, "uid", v.rec.UID, "path", v.mnt())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vols = vols
	m.started = true
	return nil
}

// readRecord reads and checks dir's record; dir's name must be its uid.
func readRecord(dir, uid string) (record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return record{}, fmt.Errorf("no volume record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("volume record: %w", err)
	}
	switch {
	case r.Herd != markerValue:
		return record{}, fmt.Errorf("volume record: no herd volume marker")
	case r.UID != uid:
		return record{}, fmt.Errorf("volume record: uid %q is not the directory's name", r.UID)
	case spec.ValidateName(r.Name) != nil || spec.ValidateName(r.Namespace) != nil:
		return record{}, fmt.Errorf("volume record: invalid name %q/%q", r.Namespace, r.Name)
	case r.CreatedAt.IsZero():
		return record{}, fmt.Errorf("volume record: no creation time")
	}
	if n, err := spec.ParseVolumeSize(r.Size); err != nil || n != r.SizeBytes {
		return record{}, fmt.Errorf("volume record: size %q does not match size_bytes %d", r.Size, r.SizeBytes)
	}
	return r, nil
}

// writeRecord replaces dir's record atomically and durably.
func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, recordTmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write volume record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, recordFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write volume record: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (m *Manager) lookup(ns, name string) (*volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return nil, ErrNotReady
	}
	v := m.vols[key(ns, name)]
	if v == nil || v.gone {
		return nil, newError(ErrNotFound, "volume %s/%s not found on this node", ns, name)
	}
	return v, nil
}

// Apply creates the volume or updates it: a larger size grows it in
// place (online), a smaller one is refused (ErrInvalid), and
// deletion_protection may change. changed is false when the spec is what
// the volume has.
func (m *Manager) Apply(ctx context.Context, s *herdv1.VolumeSpec) (*herdv1.Volume, bool, error) {
	if errs := spec.ValidateVolume(s); len(errs) > 0 {
		return nil, false, errs
	}
	ns, name := spec.VolumeNamespace(s), s.GetName()
	size, _ := spec.ParseVolumeSize(s.GetSize())
	offline := !canGrowOnline()
	if offline {
		// A grow will have to unmount the volume: no pod may be admitted
		// on it meanwhile.
		m.bindMu.Lock()
		defer m.bindMu.Unlock()
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	v, err := m.lookup(ns, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return m.create(ctx, ns, s, size)
	case err != nil:
		return nil, false, err
	}
	v.op.Lock()
	defer v.op.Unlock()
	m.mu.Lock()
	old := v.rec
	m.mu.Unlock()
	if err := spec.CheckVolumeResize(old.SizeBytes, size, old.Size, s.GetSize()); err != nil {
		return nil, false, newError(ErrInvalid, "volume %s/%s: %v", ns, name, err)
	}
	rec := old
	rec.Size, rec.SizeBytes, rec.DeletionProtection = s.GetSize(), size, s.GetDeletionProtection()
	if rec == old {
		return m.view(v), false, nil
	}
	if size > old.SizeBytes {
		err := Grow(ctx, v.img(), v.mnt(), size)
		if errors.Is(err, ErrNoOnlineGrow) && offline {
			err = m.growUnmounted(ctx, v, size)
		}
		if err != nil {
			return nil, false, fmt.Errorf("grow volume %s/%s to %s: %w", ns, name, s.GetSize(), err)
		}
		m.log.Info("volume grown", "volume", key(ns, name), "from", old.Size, "to", s.GetSize())
	}
	if err := writeRecord(v.dir, rec); err != nil {
		return nil, false, fmt.Errorf("update volume %s/%s: %w", ns, name, err)
	}
	m.mu.Lock()
	v.rec = rec
	m.mu.Unlock()
	return m.view(v), true, nil
}

// growUnmounted grows a volume that no pod mounts by unmounting it,
// growing it offline and mounting it again: ext4 grows online only for a
// process with CAP_SYS_RESOURCE. Callers hold bindMu, applyMu and v.op.
func (m *Manager) growUnmounted(ctx context.Context, v *volume, size int64) error {
	m.mu.Lock()
	rec, restoring, backups := v.rec, v.restoring, v.backups
	m.mu.Unlock()
	what := key(rec.Namespace, rec.Name)
	const why = "; agentd lacks CAP_SYS_RESOURCE, so it grows a volume only while nothing uses it"
	switch {
	case restoring:
		return newError(ErrInUse, "volume %s is being restored%s", what, why)
	case backups > 0:
		return newError(ErrInUse, "volume %s is being backed up%s", what, why)
	}
	if err := inUse(what, m.usersOf, rec.Namespace, rec.Name, false); err != nil {
		return newError(ErrInUse, "%v%s", err, why)
	}
	img, mnt := v.img(), v.mnt()
	if err := Unmount(ctx, img, mnt); err != nil {
		return err
	}
	remount := func(err error) error {
		merr := Mount(context.WithoutCancel(ctx), img, mnt)
		if merr != nil {
			m.mu.Lock()
			v.message = fmt.Sprintf("mount failed: %v", merr)
			m.mu.Unlock()
		}
		return errors.Join(err, merr)
	}
	// A loop device that outlived the detach is held by a mount
	// elsewhere: resizing under it would corrupt the filesystem.
	devs, err := loopDevices(ctx, img)
	if err == nil && len(devs) > 0 {
		err = newError(ErrInUse, "volume %s is still mounted elsewhere (%s is busy)%s", what, devs[0].path, why)
	}
	if err == nil {
		err = Grow(ctx, img, mnt, size)
	}
	return remount(err)
}

// create makes a new volume. The record goes first (see the package
// comment); on failure everything made is removed. Callers hold applyMu.
func (m *Manager) create(ctx context.Context, ns string, s *herdv1.VolumeSpec, size int64) (_ *herdv1.Volume, _ bool, err error) {
	uid := newUID()
	v := &volume{dir: filepath.Join(m.dir, uid), rec: record{
		Herd:               markerValue,
		Namespace:          ns,
		Name:               s.GetName(),
		UID:                uid,
		Size:               s.GetSize(),
		SizeBytes:          size,
		DeletionProtection: s.GetDeletionProtection(),
		CreatedAt:          time.Now().UTC(),
	}}
	what := key(ns, s.GetName())
	if err := os.Mkdir(v.dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", what, err)
	}
	defer func() {
		if err == nil {
			return
		}
		if rerr := destroy(context.WithoutCancel(ctx), v.dir); rerr != nil {
			m.log.Error("volume: cleanup after a failed create", "volume", what, "path", v.dir, "err", rerr)
		}
	}()
	if err := writeRecord(v.dir, v.rec); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", what, err)
	}
	if err := syncDir(m.dir); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", what, err)
	}
	if err := CreateImage(ctx, v.img(), size); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", what, err)
	}
	if err := os.Mkdir(v.mnt(), 0o700); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", what, err)
	}
	if err := Mount(ctx, v.img(), v.mnt()); err != nil {
		return nil, false, fmt.Errorf("create volume %s: %w", what, err)
	}
	m.mu.Lock()
	m.vols[what] = v
	m.mu.Unlock()
	m.notify()
	m.log.Info("volume created", "volume", what, "uid", uid, "size", s.GetSize(), "path", v.mnt())
	return m.view(v), true, nil
}

// destroy unmounts, detaches and removes a volume's directory, its record
// last.
func destroy(ctx context.Context, dir string) error {
	img, mnt := filepath.Join(dir, imageFile), filepath.Join(dir, mountDir)
	if err := Unmount(ctx, img, mnt); err != nil {
		return err
	}
	if err := os.Remove(img); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove image: %w", err)
	}
	// Whatever else is there is ours too (the mount point with anything
	// written into it while unmounted, a record's temporary file), but
	// RemoveAll must not reach into a mount.
	if busy, err := MountsUnder(dir); err != nil || busy {
		if err == nil {
			err = fmt.Errorf("something is still mounted in %s", dir)
		}
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read volume directory: %w", err)
	}
	for _, e := range entries {
		if e.Name() == recordFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove volume files: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, recordFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove volume record: %w", err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove volume directory: %w", err)
	}
	return syncDir(filepath.Dir(dir))
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Get returns the volume with its status, or ErrNotFound.
func (m *Manager) Get(ns, name string) (*herdv1.Volume, error) {
	v, err := m.lookup(defaultNS(ns), name)
	if err != nil {
		return nil, err
	}
	return m.view(v), nil
}

// List returns the volumes of namespace ns ("": all), by namespace and
// name.
func (m *Manager) List(ns string) ([]*herdv1.Volume, error) {
	m.mu.Lock()
	if !m.started {
		m.mu.Unlock()
		return nil, ErrNotReady
	}
	var vs []*volume
	for _, v := range m.vols {
		if !v.gone && (ns == "" || v.rec.Namespace == ns) {
			vs = append(vs, v)
		}
	}
	m.mu.Unlock()
	out := make([]*herdv1.Volume, len(vs))
	for i, v := range vs {
		out[i] = m.view(v)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].GetSpec(), out[j].GetSpec()
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	return out, nil
}

// view is the API object of v, with its status now.
func (m *Manager) view(v *volume) *herdv1.Volume {
	m.mu.Lock()
	rec, msg := v.rec, v.message
	m.mu.Unlock()
	rw, ro := m.usersOf(rec.Namespace, rec.Name)
	st := &herdv1.VolumeStatus{Phase: PhaseAvailable, BoundTo: rw, Readers: ro, Message: msg}
	if rw != "" || len(ro) > 0 {
		st.Phase = PhaseBound
	}
	if msg == "" {
		var sfs unix.Statfs_t
		if !isMountPoint(v.mnt(), v.dir) {
			st.Message = "not mounted: it is mounted again when a pod mounts it"
		} else if err := unix.Statfs(v.mnt(), &sfs); err != nil {
			st.Message = fmt.Sprintf("statfs: %v", err)
		} else {
			st.CapacityBytes = int64(sfs.Blocks) * sfs.Bsize
			st.UsedBytes = int64(sfs.Blocks-sfs.Bfree) * sfs.Bsize
		}
	}
	return &herdv1.Volume{
		Spec: &herdv1.VolumeSpec{
			Namespace:          rec.Namespace,
			Name:               rec.Name,
			Size:               rec.Size,
			DeletionProtection: rec.DeletionProtection,
		},
		Status:    st,
		Uid:       rec.UID,
		CreatedAt: timestamppb.New(rec.CreatedAt),
		SizeBytes: rec.SizeBytes,
	}
}

// isMountPoint is a cheap check for status: mnt is on another device than
// its parent dir.
func isMountPoint(mnt, parent string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(mnt, &a) != nil || unix.Stat(parent, &b) != nil {
		return false
	}
	return a.Mode&unix.S_IFMT == unix.S_IFDIR && a.Dev != b.Dev
}

// Delete deletes the volume and its data. A uid that is set must be the
// volume's (else spec.ErrOtherIncarnation); a volume with
// deletion_protection (ErrProtected) or mounted by a pod (ErrInUse) is
// refused. existed is false when there was no such volume.
func (m *Manager) Delete(ctx context.Context, ns, name, uid string) (existed bool, err error) {
	ns = defaultNS(ns)
	m.bindMu.Lock()
	defer m.bindMu.Unlock()
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	v, err := m.lookup(ns, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	v.op.Lock()
	defer v.op.Unlock()
	what := key(ns, name)
	m.mu.Lock()
	rec, restoring, backups := v.rec, v.restoring, v.backups
	m.mu.Unlock()
	switch {
	case uid != "" && uid != rec.UID:
		return true, spec.OtherIncarnation("volume "+what, rec.UID, uid)
	case rec.DeletionProtection:
		return true, newError(ErrProtected, "volume %s has deletion_protection: set deletion_protection = false first", what)
	case restoring:
		return true, newError(ErrInUse, "volume %s is being restored", what)
	case backups > 0:
		return true, newError(ErrInUse, "volume %s is being backed up", what)
	}
	if err := inUse(what, m.usersOf, ns, name, false); err != nil {
		return true, err
	}
	if err := destroy(ctx, v.dir); err != nil {
		m.mu.Lock()
		v.message = fmt.Sprintf("delete failed: %v", err)
		m.mu.Unlock()
		return true, fmt.Errorf("delete volume %s: %w", what, err)
	}
	m.mu.Lock()
	v.gone = true
	delete(m.vols, what)
	m.mu.Unlock()
	m.notify()
	m.log.Info("volume deleted", "volume", what, "uid", rec.UID)
	return true, nil
}

// inUse refuses with ErrInUse when a pod mounts the volume (read-write
// only, when rwOnly).
func inUse(what string, users func(ns, name string) (string, []string), ns, name string, rwOnly bool) error {
	rw, ro := users(ns, name)
	switch {
	case rw != "":
		return newError(ErrInUse, "volume %s is mounted read-write by pod %s", what, rw)
	case !rwOnly && len(ro) > 0:
		return newError(ErrInUse, "volume %s is mounted read-only by pod(s) %s", what, strings.Join(ro, ", "))
	}
	return nil
}

// CheckWrite refuses (ErrInUse) a pod that would mount the volume
// read-write while it is being backed up or restored: the backup would
// not be consistent. Pod admission calls it under Bind, which Backup's
// start excludes, so a backup and a new writer never overlap.
func (m *Manager) CheckWrite(ns, name string) error {
	ns = defaultNS(ns)
	v, err := m.lookup(ns, name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case v.backups > 0:
		return newError(ErrInUse, "volume %s is being backed up: a writer may mount it once the backup is done", key(ns, name))
	case v.restoring:
		return newError(ErrInUse, "volume %s is being restored", key(ns, name))
	}
	return nil
}

// MountPath returns the host path of the volume's filesystem root after
// checking that it is mounted (mounting it if not): pods bind-mount it.
// ErrNotFound when the node has no such volume; ErrInUse while it is
// being restored.
func (m *Manager) MountPath(ctx context.Context, ns, name string) (string, error) {
	ns = defaultNS(ns)
	v, err := m.lookup(ns, name)
	if err != nil {
		return "", err
	}
	v.op.Lock()
	defer v.op.Unlock()
	return m.mountLocked(ctx, v)
}

// mountLocked mounts v if needed and records the outcome in its status.
// Callers hold v.op.
func (m *Manager) mountLocked(ctx context.Context, v *volume) (string, error) {
	m.mu.Lock()
	gone, restoring, what := v.gone, v.restoring, key(v.rec.Namespace, v.rec.Name)
	m.mu.Unlock()
	switch {
	case gone:
		return "", newError(ErrNotFound, "volume %s not found on this node", what)
	case restoring:
		return "", newError(ErrInUse, "volume %s is being restored", what)
	}
	err := Mount(ctx, v.img(), v.mnt())
	m.mu.Lock()
	v.message = ""
	if err != nil {
		v.message = fmt.Sprintf("mount failed: %v", err)
	}
	m.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("mount volume %s: %w", what, err)
	}
	return v.mnt(), nil
}

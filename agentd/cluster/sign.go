package cluster

// Everything a member publishes is signed with its node key. The gossip key
// only lets a process into the conversation; it says nothing about who
// speaks, and entries and objects are relayed by every member, so the
// member that delivers one is not its author either. A signature binds an
// entry to its owner and an object to its writer: receivers check it
// against a node certificate of the cluster CA whose name is that owner or
// writer, and drop what does not verify.
//
// Certificates travel beside what they sign: a push/pull state carries the
// certificates of everything in it, a member announces a certificate it
// starts signing with, and the store keeps the certificates of its
// objects' writers (an object outlives its writer's membership). An item
// that arrives before its certificate waits, bounded, until it comes.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/herd-project/terraform-provider-herd/internal/pki"
)

// Identity binds this node's gossip to its node certificate.
type Identity struct {
	// Roots are the cluster CA's certificates.
	Roots *x509.CertPool
	// Current returns the certificate this node presents (Leaf set) and
	// its key; it is asked on every signature, so a renewed certificate
	// is used as soon as it is loaded.
	Current func() *tls.Certificate
	// Revoked reports a certificate on the deny list (nil: none is).
	Revoked func(*x509.Certificate) bool
	// AllowUnsigned accepts unsigned entries and objects, as members of
	// earlier versions send them: only for the time of a rolling upgrade.
	AllowUnsigned bool
}

// fpLen is the length of the certificate fingerprints items carry (a
// prefix of the SHA-256 of the DER): a lookup key only, the signature is
// what is checked.
const fpLen = 16

// Bounds of what waits for its certificate.
const (
	maxPendingCerts = 64
	maxPendingItems = 1024 // per certificate
)

func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return string(s[:fpLen])
}

// signer is one node certificate that is known good.
type signer struct {
	cert *x509.Certificate
	alg  x509.SignatureAlgorithm
}

type pendingItems struct {
	objects []wireObject
	entries []wireEntry
}

// idState is the certificate cache and what waits for a certificate.
type idState struct {
	mu      sync.Mutex
	certs   map[string]*signer // fingerprint → verified node certificate
	pending map[string]*pendingItems
	// announced is the fingerprint of the certificate this node last
	// announced to the members.
	announced string
	logged    map[string]bool // refusals logged once
}

var errUnsigned = errors.New("unsigned")

// sigAlgOf is the signature algorithm a key of pub signs with.
func sigAlgOf(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return x509.ECDSAWithSHA256, nil
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, nil
	}
	return 0, fmt.Errorf("unsupported key type %T", pub)
}

// sign signs msg with the certificate's key; it returns the fingerprint
// of the certificate and the signature.
func sign(cert *tls.Certificate, msg []byte) (fp string, sig []byte, err error) {
	if cert == nil || len(cert.Certificate) == 0 || cert.Leaf == nil {
		return "", nil, errors.New("no node certificate")
	}
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return "", nil, fmt.Errorf("node key of type %T cannot sign", cert.PrivateKey)
	}
	alg, err := sigAlgOf(cert.Leaf.PublicKey)
	if err != nil {
		return "", nil, err
	}
	digest, opts := msg, crypto.SignerOpts(crypto.Hash(0))
	if alg != x509.PureEd25519 {
		h := sha256.Sum256(msg)
		digest, opts = h[:], crypto.SHA256
	}
	sig, err = key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return "", nil, fmt.Errorf("sign: %w", err)
	}
	return fingerprint(cert.Certificate[0]), sig, nil
}

// appendField appends a length-prefixed field, so that no two different
// items have the same signed bytes.
func appendField(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// entryMsg is what an entry's signature covers: everything but the
// signature itself.
func entryMsg(w *wireEntry) []byte {
	b := []byte("herd gossip entry 1\x00")
	b = appendField(b, []byte(w.Owner))
	b = binary.BigEndian.AppendUint64(b, uint64(w.Epoch))
	b = binary.BigEndian.AppendUint64(b, w.Seq)
	b = appendField(b, []byte(w.Kind))
	b = appendField(b, []byte(w.Key))
	b = appendField(b, boolByte(w.Deleted))
	return appendField(b, w.Value)
}

// objectMsg is what an object's signature covers.
func objectMsg(w *wireObject) []byte {
	b := []byte("herd gossip object 1\x00")
	b = appendField(b, []byte(w.Kind))
	b = appendField(b, []byte(w.Key))
	b = binary.BigEndian.AppendUint64(b, w.Version)
	b = appendField(b, []byte(w.Writer))
	b = appendField(b, boolByte(w.Deleted))
	return appendField(b, w.Value)
}

// verifyCert checks that der is a node certificate of the cluster CA that
// is not revoked. Expiry is not checked: an object outlives the
// certificate it was written with (a revoked key is refused instead).
func (id *Identity) verifyCert(der []byte) (*signer, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if !pki.IsNode(cert) {
		return nil, fmt.Errorf("%q is not a node certificate", cert.Subject.CommonName)
	}
	at := time.Now()
	if at.After(cert.NotAfter) {
		at = cert.NotAfter
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: id.Roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	if id.Revoked != nil && id.Revoked(cert) {
		return nil, fmt.Errorf("certificate %q (serial %x) is revoked", cert.Subject.CommonName, cert.SerialNumber)
	}
	alg, err := sigAlgOf(cert.PublicKey)
	if err != nil {
		return nil, err
	}
	return &signer{cert: cert, alg: alg}, nil
}

// learnCerts adds the certificates that verify to the cache and returns
// the items that waited for them, and the certificates that were news.
func (c *Cluster) learnCerts(ders [][]byte) (waited pendingItems, found bool, news [][]byte) {
	var out pendingItems
	id := c.cfg.Identity
	if id == nil {
		return out, false, nil
	}
	for _, der := range ders {
		fp := fingerprint(der)
		c.ids.mu.Lock()
		_, known := c.ids.certs[fp]
		c.ids.mu.Unlock()
		if known {
			continue
		}
		s, err := id.verifyCert(der)
		if err != nil {
			c.logRefusal("cert\x00"+fp, "gossip: certificate refused", "err", err)
			continue
		}
		news = append(news, der)
		c.ids.mu.Lock()
		c.ids.certs[fp] = s
		if p := c.ids.pending[fp]; p != nil {
			out.objects = append(out.objects, p.objects...)
			out.entries = append(out.entries, p.entries...)
			found = true
			delete(c.ids.pending, fp)
		}
		c.ids.mu.Unlock()
	}
	return out, found, news
}

// certFor returns the DER of a known certificate by fingerprint.
func (c *Cluster) certFor(fp string) []byte {
	c.ids.mu.Lock()
	defer c.ids.mu.Unlock()
	if s := c.ids.certs[fp]; s != nil {
		return s.cert.Raw
	}
	return nil
}

// checkSig verifies that fp names a known certificate of name that signed
// msg. It reports errUnknownCert when the certificate is not known yet.
func (c *Cluster) checkSig(name string, fp, sig, msg []byte) error {
	if len(sig) == 0 {
		return errUnsigned
	}
	c.ids.mu.Lock()
	s := c.ids.certs[string(fp)]
	c.ids.mu.Unlock()
	if s == nil {
		return errUnknownCert
	}
	if s.cert.Subject.CommonName != name {
		return fmt.Errorf("signed by %q, not by %q", s.cert.Subject.CommonName, name)
	}
	if c.cfg.Identity.Revoked != nil && c.cfg.Identity.Revoked(s.cert) {
		return fmt.Errorf("signed with the revoked certificate of %q (serial %x)", name, s.cert.SerialNumber)
	}
	if err := s.cert.CheckSignature(s.alg, msg, sig); err != nil {
		return fmt.Errorf("bad signature of %q: %w", name, err)
	}
	return nil
}

var errUnknownCert = errors.New("certificate not known yet")

// signCurrent signs msg with this node's current certificate, and
// announces that certificate first when it is new.
func (c *Cluster) signCurrent(msg []byte) (fp, sig []byte, err error) {
	id := c.cfg.Identity
	if id == nil {
		return nil, nil, nil
	}
	cert := id.Current()
	f, s, err := sign(cert, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: sign as %s: %w", c.name, err)
	}
	c.ids.mu.Lock()
	if _, ok := c.ids.certs[f]; !ok {
		alg, _ := sigAlgOf(cert.Leaf.PublicKey) // sign accepted it
		c.ids.certs[f] = &signer{cert: cert.Leaf, alg: alg}
	}
	announce := c.ids.announced != f && c.queue != nil
	if announce {
		c.ids.announced = f
	}
	c.ids.mu.Unlock()
	if announce {
		go c.broadcast("c/"+c.name, envelope{Certs: [][]byte{cert.Certificate[0]}})
	}
	return []byte(f), s, nil
}

// hold keeps an item until its certificate arrives (bounded: a flood of
// items naming unknown certificates is dropped, and push/pull repairs).
func (c *Cluster) hold(fp []byte, o *wireObject, e *wireEntry) {
	c.ids.mu.Lock()
	defer c.ids.mu.Unlock()
	p := c.ids.pending[string(fp)]
	if p == nil {
		if len(c.ids.pending) >= maxPendingCerts {
			return
		}
		p = &pendingItems{}
		c.ids.pending[string(fp)] = p
	}
	if len(p.objects)+len(p.entries) >= maxPendingItems {
		return
	}
	if o != nil {
		p.objects = append(p.objects, *o)
	}
	if e != nil {
		p.entries = append(p.entries, *e)
	}
}

// authenticate returns env with only the objects and entries that are
// news to this node and carry a valid signature of their writer or owner;
// items whose certificate is not known yet wait for it. Checking news
// first (under the lock, cheap) spares a signature check of every item of
// every push/pull; signatures are checked outside the lock.
func (c *Cluster) authenticate(env envelope) envelope {
	id := c.cfg.Identity
	if id == nil {
		return env
	}
	waited, ok, news := c.learnCerts(env.Certs)
	if ok {
		// replayed through the normal path, after this message
		defer c.handle(envelope{Objects: waited.objects, Entries: waited.entries})
	}
	if len(news) > 0 && !env.Full {
		// an announcement: pass it on like any news (a push/pull's
		// certificates go with its items instead)
		for _, der := range news {
			c.relay("c/"+fingerprint(der), envelope{Certs: [][]byte{der}})
		}
	}
	var objs []wireObject
	var ents []wireEntry
	c.mu.Lock()
	for _, w := range env.Objects {
		if cur := c.objects[objKey(w.Kind, w.Key)]; cur == nil || newer(&w, &cur.wireObject) {
			objs = append(objs, w)
		}
	}
	for _, w := range env.Entries {
		if w.Owner == c.name || w.Owner == "" {
			continue
		}
		os := c.owners[w.Owner]
		if os != nil && w.Epoch == os.epoch {
			if cur := os.entries[objKey(w.Kind, w.Key)]; cur != nil && cur.seq >= w.Seq {
				continue
			}
		}
		if os != nil && w.Epoch < os.epoch {
			continue
		}
		ents = append(ents, w)
	}
	c.mu.Unlock()
	out := envelope{From: env.From, Full: env.Full, Have: env.Have, Leaving: env.Leaving}
	for i := range objs {
		w := &objs[i]
		switch err := c.checkSig(w.Writer, w.FP, w.Sig, objectMsg(w)); {
		case err == nil, errors.Is(err, errUnsigned) && id.AllowUnsigned:
			out.Objects = append(out.Objects, *w)
		case errors.Is(err, errUnknownCert):
			c.hold(w.FP, w, nil)
		default:
			c.logRefusal("o\x00"+w.Writer+"\x00"+w.Kind, "gossip: object refused", "kind", w.Kind, "key", w.Key, "writer", w.Writer, "err", err)
		}
	}
	for i := range ents {
		w := &ents[i]
		switch err := c.checkSig(w.Owner, w.FP, w.Sig, entryMsg(w)); {
		case err == nil, errors.Is(err, errUnsigned) && id.AllowUnsigned:
			out.Entries = append(out.Entries, *w)
		case errors.Is(err, errUnknownCert):
			c.hold(w.FP, nil, w)
		default:
			c.logRefusal("e\x00"+w.Owner+"\x00"+w.Kind, "gossip: entry refused", "kind", w.Kind, "key", w.Key, "owner", w.Owner, "err", err)
		}
	}
	return out
}

// certsOf returns the certificates that sign the given items, for a
// state sent or saved: every fingerprint once.
func (c *Cluster) certsOf(objs []wireObject, ents []wireEntry) [][]byte {
	if c.cfg.Identity == nil {
		return nil
	}
	seen := map[string]bool{}
	var out [][]byte
	add := func(fp []byte) {
		if len(fp) == 0 || seen[string(fp)] {
			return
		}
		seen[string(fp)] = true
		if der := c.certFor(string(fp)); der != nil {
			out = append(out, der)
		}
	}
	for i := range objs {
		add(objs[i].FP)
	}
	for i := range ents {
		add(ents[i].FP)
	}
	return out
}

// resignLoaded signs a stored object that was saved unsigned (by an
// earlier version) as this node, so that members accept it. A pod CIDR
// claim is signed only by its owner.
func (c *Cluster) resignLoaded(w *wireObject) error {
	if c.cfg.Identity == nil || len(w.Sig) != 0 || (w.Kind == kindPodCIDR && w.Key != c.name) {
		return nil
	}
	w.Writer = c.name
	fp, sig, err := c.signCurrent(objectMsg(w))
	if err != nil {
		return err
	}
	w.FP, w.Sig = fp, sig
	return nil
}

// logRefusal logs a refusal once per what (a member sending bad items
// keeps sending them with every push/pull).
func (c *Cluster) logRefusal(what, msg string, args ...any) {
	c.ids.mu.Lock()
	if c.ids.logged == nil {
		c.ids.logged = map[string]bool{}
	}
	seen := c.ids.logged[what]
	if !seen && len(c.ids.logged) < maxRefusalsLogged {
		c.ids.logged[what] = true
	}
	c.ids.mu.Unlock()
	if !seen {
		c.log.Warn(msg, args...)
	}
}

// checkIdentity refuses an identity without a usable certificate of name.
func checkIdentity(id *Identity, name string) error {
	if id == nil {
		return nil
	}
	if id.Roots == nil || id.Current == nil {
		return errors.New("cluster: Identity needs Roots and Current")
	}
	cert := id.Current()
	if cert == nil || cert.Leaf == nil {
		return errors.New("cluster: no node certificate to sign gossip with")
	}
	if cert.Leaf.Subject.CommonName != name {
		return fmt.Errorf("cluster: the node certificate is %q's, not %q's: members would refuse everything this node publishes", cert.Leaf.Subject.CommonName, name)
	}
	if _, err := id.verifyCert(cert.Certificate[0]); err != nil {
		return fmt.Errorf("cluster: the node certificate cannot sign gossip: %w", err)
	}
	return nil
}

// announceCert tells the members the certificate this node signs with.
func (c *Cluster) announceCert() {
	if c.cfg.Identity == nil {
		return
	}
	if _, _, err := c.signCurrent(nil); err != nil {
		c.log.Error("gossip: cannot sign", "err", err)
	}
}

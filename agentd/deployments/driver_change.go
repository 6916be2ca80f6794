package deployments

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// templateChange describes what changed from one template to the next in
// a few words, e.g. "web: image, env" or "containers added: sidecar".
func templateChange(prev, cur *herdv1.PodSpec) string {
	if cur == nil {
		return ""
	}
	if prev == nil {
		return "first revision"
	}
	var parts []string
	old := map[string]*herdv1.ContainerSpec{}
	for _, c := range prev.GetContainers() {
		old[c.GetName()] = c
	}
	var added []string
	for _, c := range cur.GetContainers() {
		o, ok := old[c.GetName()]
		delete(old, c.GetName())
		if !ok {
			added = append(added, c.GetName())
			continue
		}
		if f := changedFields(o, c); len(f) > 0 {
			parts = append(parts, c.GetName()+": "+strings.Join(f, ", "))
		}
	}
	if len(added) > 0 {
		parts = append(parts, "containers added: "+strings.Join(added, ", "))
	}
	if len(old) > 0 {
		var removed []string
		for _, c := range prev.GetContainers() {
			if _, ok := old[c.GetName()]; ok {
				removed = append(removed, c.GetName())
			}
		}
		parts = append(parts, "containers removed: "+strings.Join(removed, ", "))
	}
	p, c := proto.Clone(prev).(*herdv1.PodSpec), proto.Clone(cur).(*herdv1.PodSpec)
	p.Containers, c.Containers = nil, nil
	if f := changedFields(p, c); len(f) > 0 {
		parts = append(parts, "pod: "+strings.Join(f, ", "))
	}
	if len(parts) == 0 {
		return "no change to the template"
	}
	return strings.Join(parts, "; ")
}

// changedFields lists the names of the top-level fields of a and b (of one
// message type) that differ.
func changedFields(a, b proto.Message) []string {
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	var out []string
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !fieldEqual(ra, rb, fd) {
			out = append(out, string(fd.Name()))
		}
	}
	return out
}

func fieldEqual(a, b protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	ma, mb := a.New(), b.New()
	if a.Has(fd) {
		ma.Set(fd, a.Get(fd))
	}
	if b.Has(fd) {
		mb.Set(fd, b.Get(fd))
	}
	return proto.Equal(ma.Interface(), mb.Interface())
}

package resources

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/resource"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

var _ resource.ResourceWithModifyPlan = (*podResource)(nil)

// podPriorNames remembers, for the life of the provider process (one plan
// or apply), the name each planned pod (by node and new name) had in its
// prior state. The framework makes a new resource value for every call,
// so it cannot live in podResource.
var podPriorNames sync.Map

// volumeCheckTimeout bounds the plan's question to a node about a volume:
// agentd checks again at apply, so a slow node only skips the check.
const volumeCheckTimeout = 5 * time.Second

// ModifyPlan refuses a pod that would write a volume another pod already
// writes (a volume has one writer): agentd would refuse it at apply, after
// the plan promised it. Only the volume's node knows its writer, so this
// asks it; a node that cannot be asked, or a volume it does not have yet
// (one created in the same apply), leaves the check to agentd.
func (r *podResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.clients == nil {
		return
	}
	if !req.State.Raw.IsNull() && req.Plan.Raw.Equal(req.State.Raw) {
		return
	}
	var plan podModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || plan.Node.IsUnknown() || plan.Name.IsUnknown() {
		return
	}
	// The pod this one replaces may hold the volume under its old name.
	// Terraform plans a replacement twice: with the prior state (which
	// says replace), then as a create without it, so the first call
	// leaves the old name for the second.
	key := plan.Node.ValueString() + "/" + plan.Name.ValueString()
	prior := ""
	if !req.State.Raw.IsNull() {
		var state podModel
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
		if resp.Diagnostics.HasError() {
			return
		}
		prior = state.Name.ValueString()
		podPriorNames.Store(key, prior)
	} else if v, ok := podPriorNames.Load(key); ok {
		prior = v.(string)
	}
	conv, diags := podSpecFromModel(ctx, plan, false)
	if diags.HasError() {
		return // ValidateConfig and apply report it
	}
	errs := r.volumeWriters(ctx, plan.Node.ValueString(), conv, plan.Name.ValueString(), prior)
	addFieldErrors(&resp.Diagnostics, errs)
}

// volumeWriters asks the node who writes each volume the pod would write,
// and reports those held by another pod at the mount's path.
func (r *podResource) volumeWriters(ctx context.Context, nodeID string, conv specConversion, name, prior string) spec.FieldErrors {
	var errs spec.FieldErrors
	var vc herdv1.VolumeServiceClient
	ns := spec.PodNamespace(conv.spec)
	asked := map[string]string{} // volume -> its writer
	for i, c := range conv.spec.GetContainers() {
		for j, m := range c.GetVolumeMounts() {
			p := spec.Path{}.Field("containers").Index(i).Field("volume_mounts").Index(j).Field("volume")
			if m.GetVolume() == "" || m.GetReadOnly() || conv.isUnknown(p) {
				continue
			}
			writer, ok := asked[m.GetVolume()]
			if !ok {
				if vc == nil {
					var err error
					if vc, err = r.clients.VolumeClient(nodeID); err != nil {
						return errs
					}
				}
				cctx, cancel := context.WithTimeout(ctx, volumeCheckTimeout)
				v, err := vc.GetVolume(cctx, &herdv1.GetVolumeRequest{Namespace: ns, Name: m.GetVolume()})
				cancel()
				if err == nil {
					writer = v.GetStatus().GetBoundTo()
				}
				asked[m.GetVolume()] = writer
			}
			if writer != "" && writer != name && writer != prior {
				errs = append(errs, spec.FieldError{Path: p, Msg: fmt.Sprintf(
					"volume %s/%s is mounted read-write by pod %s on this node: a volume has one writer at a time "+
						"(mount it read_only, or remove that pod first)", ns, m.GetVolume(), writer)})
			}
		}
	}
	return errs
}

// isUnknown reports whether p is at or below a path whose value is not
// known yet.
func (out specConversion) isUnknown(p spec.Path) bool {
	for _, u := range out.unknown {
		if hasPrefix(p, u) {
			return true
		}
	}
	return false
}

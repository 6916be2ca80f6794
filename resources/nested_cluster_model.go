package resources

import (
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/types"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// nestedClusterModel is the state of herd_cluster.
type nestedClusterModel struct {
	ID                 types.String   `tfsdk:"id"`
	Node               types.String   `tfsdk:"node"`
	Name               types.String   `tfsdk:"name"`
	KubernetesVersion  types.String   `tfsdk:"kubernetes_version"`
	ControlPlane       types.Object   `tfsdk:"control_plane"`
	Workers            types.Object   `tfsdk:"workers"`
	PodCIDR            types.String   `tfsdk:"pod_cidr"`
	ServiceCIDR        types.String   `tfsdk:"service_cidr"`
	EndpointExposure   types.String   `tfsdk:"endpoint_exposure"`
	NetworkBinding     types.String   `tfsdk:"network_binding"`
	DeletionProtection types.Bool     `tfsdk:"deletion_protection"`
	KeepOnFailure      types.Bool     `tfsdk:"keep_on_failure"`
	StepTimeout        types.String   `tfsdk:"step_timeout"`
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
	UID                types.String   `tfsdk:"uid"`
	Endpoint           types.String   `tfsdk:"endpoint"`
	CACertificate      types.String   `tfsdk:"ca_certificate"`
	HostNamespace      types.String   `tfsdk:"host_namespace"`
	Phase              types.String   `tfsdk:"phase"`
	VMs                types.List     `tfsdk:"vms"`
	Kubeconfig         types.String   `tfsdk:"kubeconfig"`
}

// setFromCluster fills every attribute agentd reports (spec and status),
// keeping prior's spelling of equal quantities, ranges and durations.
func (m *nestedClusterModel) setFromCluster(cl *herdv1.NestedCluster, prior nestedClusterModel) {
	if s := cl.GetSpec(); s != nil {
		if s.GetName() != "" {
			m.Name = types.StringValue(s.GetName())
		}
		m.KubernetesVersion = types.StringValue(s.GetKubernetesVersion())
		m.ControlPlane = machinesValue(s.GetControlPlane(), prior.ControlPlane)
		m.Workers = machinesValue(s.GetWorkers(), prior.Workers)
		m.PodCIDR = cidrFromRemote(s.GetPodCidr(), prior.PodCIDR)
		m.ServiceCIDR = cidrFromRemote(s.GetServiceCidr(), prior.ServiceCIDR)
		m.EndpointExposure = types.StringValue(orDefault(s.GetEndpointExposure(), nestedExposureLoadBalancer))
		m.NetworkBinding = types.StringValue(orDefault(s.GetNetworkBinding(), nestedBindingBridge))
		m.DeletionProtection = types.BoolValue(s.GetDeletionProtection())
		m.KeepOnFailure = types.BoolValue(s.GetKeepOnFailure())
		m.StepTimeout = stepTimeoutFromRemote(s.GetStepTimeoutSeconds(), prior.StepTimeout)
	}
	st := cl.GetStatus()
	m.UID = types.StringValue(cl.GetUid())
	m.Endpoint = types.StringValue(st.GetEndpoint())
	m.CACertificate = types.StringValue(st.GetCaCertificate())
	m.HostNamespace = types.StringValue(st.GetHostNamespace())
	m.Phase = types.StringValue(st.GetPhase())
	m.VMs = vmsValue(st.GetVms())
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

package nested

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/herd-project/terraform-provider-herd/agentd/nested/pki"
	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
)

// errCanceled ends a job that Delete or Close stopped: no failure to
// report, no compensation (Delete removes everything; a restart marks the
// creation interrupted).
var errCanceled = errors.New("canceled")

func (d *Driver) setStep(name, step string) {
	_ = d.update(name, func(r *record) { r.Step = step })
}

func (d *Driver) setVM(cluster, vm, phase string, ready bool, ip string, nodeReady *bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.clusters[cluster]
	if e == nil {
		return
	}
	for i := range e.rec.VMs {
		if e.rec.VMs[i].Name == vm {
			v := &e.rec.VMs[i]
			changed := v.Phase != phase || v.Ready != ready || v.IP != ip || (nodeReady != nil && v.NodeReady != *nodeReady)
			v.Phase, v.Ready, v.IP = phase, ready, ip
			if nodeReady != nil {
				v.NodeReady = *nodeReady
			}
			if changed {
				_ = d.persistLocked(cluster)
			}
			return
		}
	}
}

// intend records, before the call, that attempt is about to create an
// object; created marks it done. Compensation deletes both (an intent may
// have been carried out right before a crash), but only what carries the
// marker.
func (d *Driver) intend(name string, attempt int, step, kind, ns, obj string) {
	_ = d.update(name, func(r *record) {
		for _, s := range r.Saga {
			if s.Attempt == attempt && s.Kind == kind && s.Namespace == ns && s.Name == obj {
				return
			}
		}
		r.Saga = append(r.Saga, sagaEntry{Attempt: attempt, Step: step, Kind: kind, Namespace: ns, Name: obj})
	})
}

func (d *Driver) created(name string, attempt int, kind, ns, obj string) {
	_ = d.update(name, func(r *record) {
		for i := range r.Saga {
			s := &r.Saga[i]
			if s.Attempt == attempt && s.Kind == kind && s.Namespace == ns && s.Name == obj {
				s.Created = true
			}
		}
	})
}

// createJob runs one creation attempt to Ready or Failed.
func (d *Driver) createJob(ctx context.Context, name string, attempt int) {
	step, err := d.create(ctx, name, attempt)
	if err == nil {
		_ = d.update(name, func(r *record) { r.Phase, r.Step, r.Message, r.Built = PhaseReady, "", "", true })
		d.log.Info("nested cluster ready", "cluster", name)
		// Workers changed while the creation ran: converge now.
		r, ok := d.snapshot(name)
		if ok && countRole(r.VMs, RoleWorker) != int(r.spec.GetWorkers().GetReplicas()) {
			_ = d.update(name, func(r *record) { r.Attempt++; r.Phase, r.Step = PhaseScaling, StepScale })
			d.scaleJob(ctx, name)
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	d.fail(ctx, name, attempt, step, err)
}

func countRole(vms []vmRecord, role string) int {
	n := 0
	for _, v := range vms {
		if v.Role == role {
			n++
		}
	}
	return n
}

// fail compensates (unless keep_on_failure) and then marks the cluster
// Failed with a message naming the step, the VM's status and its recent
// events, and what compensation did: once a cluster is Failed, nothing
// more happens to it until the next Apply or Delete.
func (d *Driver) fail(ctx context.Context, name string, attempt int, step string, err error) {
	r, ok := d.snapshot(name)
	if !ok {
		return
	}
	msg := "step " + step + ": " + err.Error()
	if vm := failedVM(err); vm != "" {
		msg += "; " + d.describeVM(r.Namespace, vm)
	}
	d.log.Warn("nested cluster step failed", "cluster", name, "step", step, "err", err)
	_ = d.update(name, func(r *record) { r.Step, r.Message = step, msg })
	d.failWith(name, attempt, step, msg, r.spec.GetKeepOnFailure())
}

// failWith compensates the attempt unless keep, then marks it Failed.
func (d *Driver) failWith(name string, attempt int, step, msg string, keep bool) {
	if keep {
		msg += " (keep_on_failure: what this attempt created was kept)"
	} else {
		ctx, cancel := context.WithTimeout(d.ctx, 5*time.Minute)
		removed, kept, err := d.compensate(ctx, name, attempt)
		cancel()
		note := fmt.Sprintf(" (removed %d host objects this attempt created", removed)
		if kept != "" {
			note += "; " + kept
		}
		if err != nil {
			note += "; compensation incomplete: " + err.Error()
		}
		msg += note + ")"
	}
	_ = d.update(name, func(r *record) { r.Phase, r.Step, r.Message = PhaseFailed, step, msg })
}

// compensate deletes, in reverse order, what attempt recorded in the saga
// log: VMs with their VMIs and DataVolumes, Secrets, the Service and the
// namespace (only when it holds nothing foreign). Objects without the
// marker are never touched.
func (d *Driver) compensate(ctx context.Context, name string, attempt int) (removed int, kept string, err error) {
	r, ok := d.snapshot(name)
	if !ok {
		return 0, "", nil
	}
	var errs []error
	removedVMs := map[string]bool{}
	for i := len(r.Saga) - 1; i >= 0; i-- {
		s := r.Saga[i]
		if s.Attempt != attempt {
			continue
		}
		if s.Kind == KindNamespace {
			foreign, ferr := d.foreignObjects(ctx, s.Name, name)
			if ferr != nil {
				errs = append(errs, ferr)
				continue
			}
			if len(foreign) > 0 {
				kept = fmt.Sprintf("namespace %s kept: it holds objects without herd's marker: %v", s.Name, foreign)
				continue
			}
		}
		kinds := []string{s.Kind}
		if s.Kind == KindVirtualMachine {
			kinds = []string{KindVirtualMachine, "VirtualMachineInstance"}
		}
		for _, k := range kinds {
			foreign, derr := d.deleteMarked(ctx, name, k, s.Namespace, s.Name)
			if derr != nil {
				errs = append(errs, derr)
			} else if !foreign && k == s.Kind {
				removed++
			}
		}
		if s.Kind == KindVirtualMachine {
			removedVMs[s.Name] = true
			// The DataVolume KubeVirt made from the VM's template.
			if _, derr := d.deleteMarked(ctx, name, KindDataVolume, s.Namespace, rootDiskName(s.Name)); derr != nil {
				errs = append(errs, derr)
			}
		}
	}
	_ = d.update(name, func(r *record) {
		out := r.Saga[:0]
		for _, s := range r.Saga {
			if s.Attempt != attempt {
				out = append(out, s)
			}
		}
		r.Saga = out
		if !r.Built {
			r.VMs = nil // the creation's VMs are gone
			return
		}
		vms := r.VMs[:0]
		for _, v := range r.VMs {
			if !removedVMs[v.Name] {
				vms = append(vms, v)
			}
		}
		r.VMs = vms
	})
	return removed, kept, errors.Join(errs...)
}

// create runs the steps; it returns the step that failed.
func (d *Driver) create(ctx context.Context, name string, attempt int) (string, error) {
	r, ok := d.snapshot(name)
	if !ok {
		return "", errCanceled
	}
	s := r.spec
	timeout := time.Duration(s.GetStepTimeoutSeconds()) * time.Second
	ns := r.Namespace

	// pki: the CAs, the service-account keys and a bootstrap token,
	// sealed with the node's KMS before anything touches the host.
	d.setStep(name, StepPKI)
	files, err := pki.GenerateCAs(time.Now())
	if err != nil {
		return StepPKI, err
	}
	token, err := newBootstrapToken()
	if err != nil {
		return StepPKI, err
	}
	m := &material{PKI: files, Token: token}
	sealed, err := d.seal(ctx, name, r.UID, m)
	if err != nil {
		return StepPKI, err
	}
	if err := d.update(name, func(r *record) { r.Sealed, r.CACert = sealed, string(files.CACertificate()) }); err != nil {
		return StepPKI, err
	}

	// namespace
	d.setStep(name, StepNamespace)
	if err := d.ensureNamespace(ctx, name, attempt, ns); err != nil {
		return StepNamespace, err
	}

	// endpoint: the Service first, its address into the certificates.
	d.setStep(name, StepEndpoint)
	endpoint, err := d.ensureEndpoint(ctx, name, attempt, ns, s, timeout)
	if err != nil {
		return StepEndpoint, err
	}
	host, _ := splitHostPort(endpoint)
	kc, err := files.AdminKubeconfig(name, "https://"+endpoint, time.Now())
	if err != nil {
		return StepEndpoint, err
	}
	m.Kubeconfig = kc
	if sealed, err = d.seal(ctx, name, r.UID, m); err != nil {
		return StepEndpoint, err
	}
	if err := d.update(name, func(r *record) { r.Sealed, r.Endpoint = sealed, endpoint }); err != nil {
		return StepEndpoint, err
	}
	d.log.Info("nested cluster endpoint", "cluster", name, "endpoint", endpoint)

	// cloud-init: one Secret per VM.
	d.setStep(name, StepCloudInit)
	caHash, err := files.CAHash()
	if err != nil {
		return StepCloudInit, err
	}
	gp := guestParams{
		Cluster: name, Version: s.GetKubernetesVersion(), Endpoint: endpoint, EndpointSAN: host,
		PodCIDR: s.GetPodCidr(), ServiceCIDR: s.GetServiceCidr(), Token: token, CAHash: caHash, Shared: files.Shared(),
	}
	cps := int(s.GetControlPlane().GetReplicas())
	for i := range cps {
		if err := d.ensureUserData(ctx, name, attempt, StepCloudInit, ns, gp, RoleControlPlane, i); err != nil {
			return StepCloudInit, err
		}
	}
	for i := range int(s.GetWorkers().GetReplicas()) {
		if err := d.ensureUserData(ctx, name, attempt, StepCloudInit, ns, gp, RoleWorker, i); err != nil {
			return StepCloudInit, err
		}
	}

	// control-plane: the first one, which runs kubeadm init.
	d.setStep(name, StepControlPlane)
	if err := d.ensureVM(ctx, name, attempt, StepControlPlane, ns, s, RoleControlPlane, 0); err != nil {
		return StepControlPlane, err
	}
	d.setStep(name, StepVMReady)
	if _, err := d.waitVMIReady(ctx, name, ns, vmName(name, RoleControlPlane, 0), timeout); err != nil {
		return StepVMReady, err
	}
	d.setStep(name, StepAPIReady)
	if err := d.waitAPI(ctx, kc, timeout); err != nil {
		return StepAPIReady, &stepError{VM: vmName(name, RoleControlPlane, 0), Err: err}
	}
	// control-plane-join: kubeadm adds control planes one at a time.
	if cps > 1 {
		d.setStep(name, StepJoin)
		for i := 1; i < cps; i++ {
			if err := d.ensureVM(ctx, name, attempt, StepJoin, ns, s, RoleControlPlane, i); err != nil {
				return StepJoin, err
			}
			if _, err := d.waitVMIReady(ctx, name, ns, vmName(name, RoleControlPlane, i), timeout); err != nil {
				return StepJoin, err
			}
		}
	}
	// workers
	d.setStep(name, StepWorkers)
	var workers []string
	for i := range int(s.GetWorkers().GetReplicas()) {
		if err := d.ensureVM(ctx, name, attempt, StepWorkers, ns, s, RoleWorker, i); err != nil {
			return StepWorkers, err
		}
		workers = append(workers, vmName(name, RoleWorker, i))
	}
	for _, w := range workers {
		if _, err := d.waitVMIReady(ctx, name, ns, w, timeout); err != nil {
			return StepWorkers, err
		}
	}
	// nodes-ready: every VM's nested Node.
	d.setStep(name, StepNodesReady)
	var all []string
	for i := range cps {
		all = append(all, vmName(name, RoleControlPlane, i))
	}
	all = append(all, workers...)
	if err := d.waitNodes(ctx, name, kc, all, timeout); err != nil {
		return StepNodesReady, err
	}
	return "", nil
}

// ensureNamespace creates the cluster's namespace, or adopts it when it
// already carries this cluster's marker. A foreign namespace of the same
// name stops the creation.
func (d *Driver) ensureNamespace(ctx context.Context, name string, attempt int, ns string) error {
	nsc := d.cfg.Host.Kube.CoreV1().Namespaces()
	if cur, err := nsc.Get(ctx, ns, metav1.GetOptions{}); err == nil {
		if !d.ours(cur, name) {
			return fmt.Errorf("host namespace %s exists and does not carry herd's marker for this cluster: refusing to use it", ns)
		}
		if cur.DeletionTimestamp != nil {
			return fmt.Errorf("host namespace %s is still being deleted (Terminating): try again when it is gone", ns)
		}
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read host namespace %s: %w", ns, err)
	}
	d.intend(name, attempt, StepNamespace, KindNamespace, "", ns)
	_, err := nsc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: d.markers(name, RoleNamespace)}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create host namespace %s: %w", ns, err)
	}
	d.created(name, attempt, KindNamespace, "", ns)
	return nil
}

// ensureEndpoint creates the control-plane endpoint Service and returns
// its address (host:port) once the host gave it one.
func (d *Driver) ensureEndpoint(ctx context.Context, name string, attempt int, ns string, s *herdv1.NestedClusterSpec, timeout time.Duration) (string, error) {
	svcs := d.cfg.Host.Kube.CoreV1().Services(ns)
	sname := endpointName(name)
	typ := corev1.ServiceType(s.GetEndpointExposure())
	sel := d.markers(name, RoleControlPlane)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: sname, Namespace: ns, Labels: d.markers(name, RoleEndpoint)},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: sel,
			Ports:    []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: apiServerPort, TargetPort: intstr.FromInt(apiServerPort)}},
		},
	}
	d.intend(name, attempt, StepEndpoint, KindService, ns, sname)
	if _, err := svcs.Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create Service %s: %w", sname, err)
	}
	d.created(name, attempt, KindService, ns, sname)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		cur, err := svcs.Get(wctx, sname, metav1.GetOptions{})
		if err == nil {
			if !d.ours(cur, name) {
				return "", fmt.Errorf("a Service %s exists without herd's marker for this cluster", sname)
			}
			switch typ {
			case corev1.ServiceTypeLoadBalancer:
				for _, in := range cur.Status.LoadBalancer.Ingress {
					if in.IP != "" {
						return net.JoinHostPort(in.IP, strconv.Itoa(apiServerPort)), nil
					}
					if in.Hostname != "" {
						return net.JoinHostPort(in.Hostname, strconv.Itoa(apiServerPort)), nil
					}
				}
			case corev1.ServiceTypeNodePort:
				if np := cur.Spec.Ports[0].NodePort; np != 0 {
					addr, err := d.nodeAddress(wctx)
					if err != nil {
						return "", err
					}
					return net.JoinHostPort(addr, strconv.Itoa(int(np))), nil
				}
			default:
				if ip := cur.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
					return net.JoinHostPort(ip, strconv.Itoa(apiServerPort)), nil
				}
			}
		}
		if err := d.sleep(wctx); err != nil {
			if typ == corev1.ServiceTypeLoadBalancer {
				return "", fmt.Errorf("timed out after %s waiting for Service %s to get a load-balancer address (does the host cluster have a load-balancer controller? else use endpoint_exposure NodePort)", timeout, sname)
			}
			return "", fmt.Errorf("timed out after %s waiting for Service %s's address", timeout, sname)
		}
	}
}

// nodeAddress is the host address of NodePort endpoints.
func (d *Driver) nodeAddress(ctx context.Context) (string, error) {
	if d.cfg.NodeAddress != "" {
		return d.cfg.NodeAddress, nil
	}
	nodes, err := d.cfg.Host.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list host nodes for a NodePort address: %w", err)
	}
	for _, want := range []corev1.NodeAddressType{corev1.NodeExternalIP, corev1.NodeInternalIP} {
		for _, n := range nodes.Items {
			for _, a := range n.Status.Addresses {
				if a.Type == want && a.Address != "" {
					return a.Address, nil
				}
			}
		}
	}
	return "", errors.New("no host node has an address for the NodePort endpoint (start agentd with --nested-node-address)")
}

// ensureUserData writes a VM's cloud-init Secret.
func (d *Driver) ensureUserData(ctx context.Context, name string, attempt int, step, ns string, gp guestParams, role string, i int) error {
	vm := vmName(name, role, i)
	gp.VM, gp.Role, gp.First = vm, role, role == RoleControlPlane && i == 0
	ud, err := userData(gp)
	if err != nil {
		return fmt.Errorf("render cloud-init of %s: %w", vm, err)
	}
	lbl := d.markers(name, RoleCloudInit)
	lbl[LabelVM] = vm
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: userDataName(vm), Namespace: ns, Labels: lbl},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{UserDataKey: []byte(ud)},
	}
	d.intend(name, attempt, step, KindSecret, ns, sec.Name)
	secs := d.cfg.Host.Kube.CoreV1().Secrets(ns)
	if _, err := secs.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Secret %s: %w", sec.Name, err)
		}
		cur, gerr := secs.Get(ctx, sec.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if !d.ours(cur, name) {
			return fmt.Errorf("a Secret %s exists without herd's marker for this cluster", sec.Name)
		}
		cur.Data = sec.Data
		if _, err := secs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update Secret %s: %w", sec.Name, err)
		}
	}
	d.created(name, attempt, KindSecret, ns, sec.Name)
	return nil
}

// ensureVM creates one VM (and notes it in the status).
func (d *Driver) ensureVM(ctx context.Context, name string, attempt int, step, ns string, s *herdv1.NestedClusterSpec, role string, i int) error {
	vm, err := d.vmObject(ns, s, role, i)
	if err != nil {
		return err
	}
	u, err := toUnstructured(vm)
	if err != nil {
		return err
	}
	d.intend(name, attempt, step, KindVirtualMachine, ns, vm.Name)
	_ = d.update(name, func(r *record) {
		if !containsVM(r.VMs, vm.Name) {
			r.VMs = append(r.VMs, vmRecord{Name: vm.Name, Role: role, Phase: "Provisioning"})
			sortVMs(r.VMs)
		}
	})
	if _, err := d.cfg.Host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return &stepError{VM: vm.Name, Err: fmt.Errorf("create VirtualMachine %s: %w", vm.Name, err)}
		}
		cur, gerr := d.cfg.Host.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Get(ctx, vm.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if !d.ours(cur, name) {
			return fmt.Errorf("VirtualMachine %s exists without herd's marker for this cluster", vm.Name)
		}
	}
	d.created(name, attempt, KindVirtualMachine, ns, vm.Name)
	return nil
}

// waitAPI waits for the nested API server's /readyz through the endpoint.
func (d *Driver) waitAPI(ctx context.Context, kubeconfig []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		last = guestReadyz(rctx, kubeconfig)
		rcancel()
		if last == nil {
			return nil
		}
		if err := d.sleep(ctx); err != nil {
			return fmt.Errorf("timed out after %s waiting for the nested API server's /readyz through the endpoint: %w", timeout, last)
		}
	}
}

// waitNodes waits until every named nested Node is Ready.
func (d *Driver) waitNodes(ctx context.Context, cluster string, kubeconfig []byte, names []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	var missing string
	for {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		nodes, err := guestNodesReady(rctx, kubeconfig)
		rcancel()
		last = err
		if err == nil {
			missing = ""
			for _, n := range names {
				ready := nodes[n]
				d.setNodeReady(cluster, n, ready)
				if !ready && missing == "" {
					missing = n
				}
			}
			if missing == "" {
				return nil
			}
		}
		if err := d.sleep(ctx); err != nil {
			if missing != "" {
				return &stepError{VM: missing, Err: fmt.Errorf("timed out after %s waiting for nested node %s to be Ready", timeout, missing)}
			}
			return fmt.Errorf("timed out after %s waiting for the nested nodes: %w", timeout, last)
		}
	}
}

func (d *Driver) setNodeReady(cluster, vm string, ready bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.clusters[cluster]
	if e == nil {
		return
	}
	for i := range e.rec.VMs {
		if e.rec.VMs[i].Name == vm && e.rec.VMs[i].NodeReady != ready {
			e.rec.VMs[i].NodeReady = ready
			_ = d.persistLocked(cluster)
		}
	}
}

// scaleJob converges the workers on spec.workers.replicas: new VMs with
// the next indexes (a fresh bootstrap token minted through the nested
// API), then the highest indexes removed (their nested Node first, best
// effort).
func (d *Driver) scaleJob(ctx context.Context, name string) {
	r, ok := d.snapshot(name)
	if !ok {
		return
	}
	attempt := r.Attempt
	_ = d.update(name, func(r *record) { r.Phase, r.Step = PhaseScaling, StepScale })
	err := d.scale(ctx, name, attempt)
	if err == nil {
		_ = d.update(name, func(r *record) { r.Phase, r.Step, r.Message = PhaseReady, "", "" })
		d.log.Info("nested cluster workers scaled", "cluster", name, "replicas", r.spec.GetWorkers().GetReplicas())
		return
	}
	if ctx.Err() != nil {
		return
	}
	d.fail(ctx, name, attempt, StepScale, err)
}

func (d *Driver) scale(ctx context.Context, name string, attempt int) error {
	r, ok := d.snapshot(name)
	if !ok {
		return errCanceled
	}
	s, ns := r.spec, r.Namespace
	want := int(s.GetWorkers().GetReplicas())
	timeout := time.Duration(s.GetStepTimeoutSeconds()) * time.Second
	m, err := d.open(ctx, r)
	if err != nil {
		return err
	}
	objs, err := d.listCluster(ctx, ns, name)
	if err != nil {
		return err
	}
	have := map[int]bool{}
	for _, o := range objs {
		if o.Kind == KindVirtualMachine && o.Labels[LabelRole] == RoleWorker {
			var i int
			if _, err := fmt.Sscanf(o.Name[len(name):], "-worker-%d", &i); err == nil && vmName(name, RoleWorker, i) == o.Name {
				have[i] = true
			}
		}
	}
	var added []string
	token := ""
	for i := range want {
		if have[i] {
			continue
		}
		if token == "" {
			tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			token, err = guestMintToken(tctx, m.Kubeconfig, 2*time.Hour)
			cancel()
			if err != nil {
				return err
			}
		}
		caHash, err := m.PKI.CAHash()
		if err != nil {
			return err
		}
		host, _ := splitHostPort(r.Endpoint)
		gp := guestParams{
			Cluster: name, Version: s.GetKubernetesVersion(), Endpoint: r.Endpoint, EndpointSAN: host,
			PodCIDR: s.GetPodCidr(), ServiceCIDR: s.GetServiceCidr(), Token: token, CAHash: caHash,
		}
		if err := d.ensureUserData(ctx, name, attempt, StepScale, ns, gp, RoleWorker, i); err != nil {
			return err
		}
		if err := d.ensureVM(ctx, name, attempt, StepScale, ns, s, RoleWorker, i); err != nil {
			return err
		}
		added = append(added, vmName(name, RoleWorker, i))
	}
	for _, vm := range added {
		if _, err := d.waitVMIReady(ctx, name, ns, vm, timeout); err != nil {
			return err
		}
	}
	if len(added) > 0 {
		if err := d.waitNodes(ctx, name, m.Kubeconfig, added, timeout); err != nil {
			return err
		}
	}
	// Scale down, highest index first.
	var extra []int
	for i := range have {
		if i >= want {
			extra = append(extra, i)
		}
	}
	for k := range extra {
		for j := k + 1; j < len(extra); j++ {
			if extra[j] > extra[k] {
				extra[k], extra[j] = extra[j], extra[k]
			}
		}
	}
	for _, i := range extra {
		vm := vmName(name, RoleWorker, i)
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := guestDeleteNode(nctx, m.Kubeconfig, vm); err != nil {
			d.log.Warn("delete nested node before its VM (best effort)", "cluster", name, "node", vm, "err", err)
		}
		cancel()
		for _, k := range []struct{ kind, obj string }{
			{KindVirtualMachine, vm}, {"VirtualMachineInstance", vm}, {KindDataVolume, rootDiskName(vm)}, {KindSecret, userDataName(vm)},
		} {
			if _, err := d.deleteMarked(ctx, name, k.kind, ns, k.obj); err != nil {
				return &stepError{VM: vm, Err: err}
			}
		}
		_ = d.update(name, func(r *record) {
			out := r.VMs[:0]
			for _, v := range r.VMs {
				if v.Name != vm {
					out = append(out, v)
				}
			}
			r.VMs = out
		})
	}
	// A successful scale keeps what it made: drop its saga entries.
	_ = d.update(name, func(r *record) {
		out := r.Saga[:0]
		for _, e := range r.Saga {
			if e.Attempt != attempt {
				out = append(out, e)
			}
		}
		r.Saga = out
	})
	return nil
}

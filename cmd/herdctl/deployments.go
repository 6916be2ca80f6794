package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/spec"
)

const deploymentsUsage = `Usage: herdctl deployments [--namespace NS] [--node NAME@ADDRESS] [TLS flags]

Lists the cluster's deployments as the given node sees them: ready of
desired replicas, replicas of the current revision (up-to-date), available
replicas, the revision and the rollout phase.
`

const deploymentUsage = `Usage: herdctl deployment NAME [-n NS] [--watch] [--node NAME@ADDRESS] [TLS flags]

Shows one deployment: its replicas (node, revision, phase, readiness, IP),
placement and strategy, and its rollout history with outcomes.

With --watch, prints a line at each change of the rollout (revision,
ready/updated/available counts, phase, message) until it is Complete,
Failed or RolledBack; Failed and RolledBack exit with status 1.
`

func runDeployments(args []string, stdout io.Writer) error {
	fs := newFlagSet("deployments")
	var cf connFlags
	cf.register(fs)
	ns := fs.String("namespace", "", "only this namespace (default: all)")
	if _, help, err := parseArgs(fs, args, deploymentsUsage, stdout); help || err != nil {
		return err
	}
	return cf.call(deploymentsUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := herdv1.NewDeploymentServiceClient(conn).ListDeployments(ctx, &herdv1.ListDeploymentsRequest{Namespace: *ns})
		if err != nil {
			return fmt.Errorf("list deployments: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE/NAME\tREADY/DESIRED\tUP-TO-DATE\tAVAILABLE\tREVISION\tPHASE")
		for _, d := range resp.GetDeployments() {
			sp, st := d.GetSpec(), d.GetStatus()
			fmt.Fprintf(tw, "%s/%s\t%d/%d\t%d\t%d\t%s\t%s\n", sp.GetNamespace(), sp.GetName(),
				st.GetReadyReplicas(), sp.GetReplicas(), st.GetUpdatedReplicas(), st.GetAvailableReplicas(),
				revisionText(d), phaseOf(d))
		}
		return tw.Flush()
	})
}

// revisionText is the spec's revision, and the one the replicas converge
// on when it differs (after a rollback).
func revisionText(d *herdv1.Deployment) string {
	cur := d.GetStatus().GetCurrentRevision()
	if cur == 0 || cur == d.GetRevision() {
		return fmt.Sprint(d.GetRevision())
	}
	return fmt.Sprintf("%d (running %d)", d.GetRevision(), cur)
}

// phaseOf is the status phase; "Pending" before any driver wrote one.
func phaseOf(d *herdv1.Deployment) string {
	if p := d.GetStatus().GetPhase(); p != "" {
		return p
	}
	return "Pending"
}

func runDeployment(args []string, stdout io.Writer) error {
	fs := newFlagSet("deployment")
	var cf connFlags
	cf.register(fs)
	var ns string
	fs.StringVar(&ns, "namespace", "", "the deployment's namespace (default: default)")
	fs.StringVar(&ns, "n", "", "short for --namespace")
	watch := fs.Bool("watch", false, "follow the rollout until it is Complete, Failed or RolledBack")
	pos, help, err := parseArgs(fs, args, deploymentUsage, stdout)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return newUsageError(deploymentUsage, "deployment: want exactly one NAME, got %d arguments", len(pos))
	}
	req := &herdv1.GetDeploymentRequest{Namespace: ns, Name: pos[0]}
	if *watch {
		return cf.call(deploymentUsage, 0, func(ctx context.Context, conn *grpc.ClientConn) error {
			return watchDeployment(ctx, herdv1.NewDeploymentServiceClient(conn), req, stdout)
		})
	}
	return cf.call(deploymentUsage, 15*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
		d, err := herdv1.NewDeploymentServiceClient(conn).GetDeployment(ctx, req)
		if err != nil {
			return fmt.Errorf("get deployment %s: %w", pos[0], err)
		}
		return describeDeployment(stdout, d)
	})
}

func describeDeployment(w io.Writer, d *herdv1.Deployment) error {
	sp, st := d.GetSpec(), d.GetStatus()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Deployment:\t%s/%s\n", sp.GetNamespace(), sp.GetName())
	fmt.Fprintf(tw, "UID:\t%s\n", d.GetUid())
	rev := fmt.Sprintf("%d", d.GetRevision())
	if st != nil {
		rev += fmt.Sprintf(" (current %d, stable %d", st.GetCurrentRevision(), st.GetStableRevision())
		if st.GetServingRevision() != 0 {
			rev += fmt.Sprintf(", serving %d", st.GetServingRevision())
		}
		if st.GetFailedRevision() != 0 {
			rev += fmt.Sprintf(", failed %d", st.GetFailedRevision())
		}
		rev += ")"
	}
	fmt.Fprintf(tw, "Revision:\t%s\n", rev)
	fmt.Fprintf(tw, "Replicas:\t%d desired, %d ready, %d up-to-date, %d available\n",
		sp.GetReplicas(), st.GetReadyReplicas(), st.GetUpdatedReplicas(), st.GetAvailableReplicas())
	phase := phaseOf(d)
	if m := st.GetMessage(); m != "" {
		phase += ": " + m
	}
	fmt.Fprintf(tw, "Phase:\t%s\n", phase)
	if st.GetDriver() != "" {
		fmt.Fprintf(tw, "Driver:\t%s\n", st.GetDriver())
	}
	fmt.Fprintf(tw, "Placement:\t%s\n", placementText(sp))
	fmt.Fprintf(tw, "Strategy:\t%s\n", strategyText(sp.GetStrategy()))
	fmt.Fprintf(tw, "Version:\t%d (observed %d)\n", d.GetVersion(), st.GetObservedVersion())
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tNODE\tREVISION\tPHASE\tREADY\tIP\tMESSAGE")
	rs := append([]*herdv1.ReplicaStatus(nil), st.GetReplicaStatus()...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].GetPod() < rs[j].GetPod() })
	for _, r := range rs {
		phase := r.GetPhase()
		if r.GetTerminating() {
			phase += " (terminating)"
		}
		ready := fmt.Sprint(r.GetReady())
		if r.GetReady() && !r.GetAvailable() {
			ready += " (not yet available)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.GetPod(), r.GetNode(), r.GetRevision(), phase, ready, r.GetPodIp(), r.GetMessage())
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tCREATED\tOUTCOME\tCHANGE\tMESSAGE")
	for _, h := range st.GetHistory() {
		created := ""
		if h.GetCreatedAt() != nil {
			created = h.GetCreatedAt().AsTime().UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", h.GetRevision(), created, h.GetOutcome(), h.GetChange(), h.GetMessage())
	}
	return tw.Flush()
}

func placementText(sp *herdv1.DeploymentSpec) string {
	p := sp.GetPlacement()
	s := p.GetStrategy()
	if s == "" {
		s = spec.PlacementBinPack
	}
	if m := p.GetMaxPerNode(); m > 0 {
		s += fmt.Sprintf(", at most %d per node", m)
	}
	if sel := sp.GetNodeSelector(); len(sel) > 0 {
		keys := make([]string, 0, len(sel))
		for k := range sel {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + sel[k]
		}
		s += ", nodes " + strings.Join(parts, ",")
	}
	return s
}

func strategyText(st *herdv1.DeploymentStrategy) string {
	typ := st.GetType()
	if typ == "" {
		typ = spec.StrategyRollingUpdate
	}
	s := typ
	if typ == spec.StrategyRollingUpdate {
		surge, unavail := int32(spec.DefaultMaxSurge), int32(spec.DefaultMaxUnavailable)
		if st.MaxSurge != nil {
			surge = st.GetMaxSurge()
		}
		if st.MaxUnavailable != nil {
			unavail = st.GetMaxUnavailable()
		}
		s += fmt.Sprintf(", surge %d / unavailable %d", surge, unavail)
	}
	deadline := st.GetProgressDeadlineSeconds()
	if deadline == 0 {
		deadline = spec.DefaultProgressDeadline
	}
	s += fmt.Sprintf(", min ready %ds, progress deadline %ds", st.GetMinReadySeconds(), deadline)
	if st.AutoRollback == nil || st.GetAutoRollback() {
		s += ", auto rollback"
	}
	return s
}

// errRolloutFailed is watch's error for a rollout that ended Failed or
// RolledBack.
var errRolloutFailed = errors.New("rollout did not complete")

// watchDeployment prints a line per change until the rollout of the
// current spec version ends.
func watchDeployment(ctx context.Context, c herdv1.DeploymentServiceClient, req *herdv1.GetDeploymentRequest, w io.Writer) error {
	stream, err := c.WatchDeployment(ctx, req)
	if err != nil {
		return fmt.Errorf("watch deployment %s: %w", req.GetName(), err)
	}
	last := ""
	for {
		d, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("watch deployment %s: %w", req.GetName(), err)
		}
		if line := watchLine(d); line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		st := d.GetStatus()
		if st.GetObservedVersion() < d.GetVersion() {
			continue // the driver has not acted on this spec yet
		}
		switch st.GetPhase() {
		case spec.PhaseComplete:
			return nil
		case spec.PhaseFailed, spec.PhaseRolledBack:
			return fmt.Errorf("%w: %s: %s", errRolloutFailed, st.GetPhase(), st.GetMessage())
		}
	}
}

func watchLine(d *herdv1.Deployment) string {
	sp, st := d.GetSpec(), d.GetStatus()
	line := fmt.Sprintf("revision %s: %d/%d ready, %d updated, %d available, %s",
		revisionText(d), st.GetReadyReplicas(), sp.GetReplicas(), st.GetUpdatedReplicas(), st.GetAvailableReplicas(), phaseOf(d))
	if m := st.GetMessage(); m != "" {
		line += ": " + m
	}
	return line
}

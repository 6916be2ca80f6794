package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	herdv1 "github.com/herd-project/terraform-provider-herd/api/herd/v1"
	"github.com/herd-project/terraform-provider-herd/internal/acctest"
	"github.com/herd-project/terraform-provider-herd/pulumi/provider"
	"github.com/herd-project/terraform-provider-herd/sdk/go/herd"
)

// e2eSpec is what the program declares; the test changes it between runs.
type e2eSpec struct {
	nodeName, nodeAddr, image string
	secretValue               string
	greeting                  string // the web pod's env: changing it replaces the pod
	replicas                  int    // of the api deployment: changing it scales in place
}

// e2eProgram is the quickstart as a Pulumi Go program: a node, a secret
// (sensitive data: a Pulumi secret), a web pod that mounts it and serves
// once ready, a service in front of it, and a deployment of api replicas.
func e2eProgram(s *e2eSpec) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		node, err := herd.NewNode(ctx, "node", &herd.NodeArgs{
			Name:    pulumi.String(s.nodeName),
			Address: pulumi.String(s.nodeAddr),
			Labels:  pulumi.StringMap{"role": pulumi.String("web")},
		})
		if err != nil {
			return err
		}
		secret, err := herd.NewSecret(ctx, "token", &herd.SecretArgs{
			Node: node.ID().ToStringOutput(),
			Name: pulumi.String("web-token"),
			Data: pulumi.StringMap{"token": pulumi.String(s.secretValue)},
		})
		if err != nil {
			return err
		}
		web, err := herd.NewPod(ctx, "web", &herd.PodArgs{
			Node:   node.ID().ToStringOutput(),
			Name:   pulumi.String("web"),
			Labels: pulumi.StringMap{"app": pulumi.String("web")},
			// httpd as PID 1 ignores SIGTERM: do not wait the default 30 s.
			TerminationGracePeriodSeconds: pulumi.Int(1),
			Containers: herd.PodContainerArray{herd.PodContainerArgs{
				Name:     pulumi.String("httpd"),
				Image:    pulumi.String(s.image),
				Commands: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-c")},
				Args: pulumi.StringArray{pulumi.String(
					`mkdir -p /www && echo "$GREETING: token of $(wc -c < /run/secrets/web-token/token) bytes" > /www/index.html && exec httpd -f -p 8080 -h /www`)},
				Env:          pulumi.StringMap{"GREETING": pulumi.String(s.greeting)},
				SecretMounts: herd.PodContainerSecretMountArray{herd.PodContainerSecretMountArgs{Secret: secret.Name}},
				Ports: herd.PodContainerPortArray{herd.PodContainerPortArgs{
					Name: pulumi.String("http"), ContainerPort: pulumi.Int(8080),
				}},
				ReadinessProbe: herd.PodContainerReadinessProbeArgs{
					HttpGet:       herd.PodContainerReadinessProbeHttpGetArgs{Path: pulumi.String("/"), PortName: pulumi.String("http")},
					PeriodSeconds: pulumi.Int(1),
				},
			}},
		})
		if err != nil {
			return err
		}
		svc, err := herd.NewService(ctx, "web", &herd.ServiceArgs{
			Node:     node.ID().ToStringOutput(),
			Name:     pulumi.String("web"),
			Selector: pulumi.StringMap{"app": pulumi.String("web")},
			Ports: herd.ServicePortArray{herd.ServicePortArgs{
				Name: pulumi.String("http"), Port: pulumi.Int(80), TargetPortName: pulumi.String("http"),
			}},
		}, pulumi.DependsOn([]pulumi.Resource{web}))
		if err != nil {
			return err
		}
		ctx.Export("podUid", web.Uid)
		ctx.Export("clusterIp", svc.ClusterIp)
		ctx.Export("secretChecksum", secret.Checksum)
		api, err := herd.NewDeployment(ctx, "api", &herd.DeploymentArgs{
			Node:     node.ID().ToStringOutput(),
			Name:     pulumi.String("api"),
			Replicas: pulumi.Int(s.replicas),
			Selector: pulumi.StringMap{"app": pulumi.String("api")},
			Template: herd.DeploymentTemplateArgs{
				Labels:                        pulumi.StringMap{"app": pulumi.String("api")},
				TerminationGracePeriodSeconds: pulumi.Int(1),
				Containers: herd.DeploymentTemplateContainerArray{herd.DeploymentTemplateContainerArgs{
					Name:     pulumi.String("httpd"),
					Image:    pulumi.String(s.image),
					Commands: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-c")},
					Args: pulumi.StringArray{pulumi.String(
						`mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www`)},
					MemoryRequest: pulumi.String("16Mi"),
					Ports: herd.DeploymentTemplateContainerPortArray{herd.DeploymentTemplateContainerPortArgs{
						Name: pulumi.String("http"), ContainerPort: pulumi.Int(8080),
					}},
					ReadinessProbe: herd.DeploymentTemplateContainerReadinessProbeArgs{
						HttpGet:       herd.DeploymentTemplateContainerReadinessProbeHttpGetArgs{Path: pulumi.String("/"), PortName: pulumi.String("http")},
						PeriodSeconds: pulumi.Int(1),
					},
				}},
			},
		})
		if err != nil {
			return err
		}
		ctx.Export("apiRevision", api.Revision)
		ctx.Export("apiReady", api.ReadyReplicas)
		return nil
	}
}

// The real Pulumi CLI runs an Automation API inline Go program against a
// real agentd (a one-node cluster: services, secrets and deployments need
// one): up creates the node, secret, pod, service and a deployment of two
// replicas; a second preview shows no change; a changed pod is replaced
// and the deployment scaled to three in place (its two replicas stay);
// destroy removes everything. Each step
// is checked on the node, and the state on disk holds the secret value and
// the client key only as ciphertext. Offline: the plugin is installed from
// a local file and plugin acquisition is off.
func TestPulumiCLIUpPreviewReplaceDestroy(t *testing.T) {
	t.Parallel()
	cli := pulumiCLI(t)
	env := acctest.SharedEnv(t)
	pluginBin := pluginBinary(t)
	cluster := env.NewCluster(t, acctest.ClusterOptions{
		Names:  []string{"pe2e"},
		Subnet: netip.MustParsePrefix("10.91.0.0/24"),
	})
	cn := cluster.Nodes[0]
	secrets := herdv1.NewSecretServiceClient(cn.Conn)
	ctx := testCtx(t, 15*time.Minute)

	// Everything Pulumi writes lives under dir: its home (plugins), the
	// file backend (state), the workspace.
	dir := t.TempDir()
	home, backend, work := filepath.Join(dir, "home"), filepath.Join(dir, "state"), filepath.Join(dir, "work")
	root := filepath.Join(dir, "cli")
	for _, d := range []string{home, backend, work, filepath.Join(root, "bin")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(cli, filepath.Join(root, "bin", "pulumi")); err != nil {
		t.Fatal(err)
	}
	envVars := map[string]string{
		"PULUMI_HOME":                                 home,
		"PULUMI_SKIP_UPDATE_CHECK":                    "true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		"PULUMI_CONFIG_PASSPHRASE":                    "herd-e2e-passphrase",
		"PULUMI_BACKEND_URL":                          "file://" + backend,
		// Keep herd's own environment out of the provider: only Pulumi
		// config configures it here.
		"HERD_CA_CERT": "", "HERD_CLIENT_CERT": "", "HERD_CLIENT_KEY": "",
	}
	install := exec.CommandContext(ctx, cli, "plugin", "install", "resource", provider.Name, provider.Version, "--file", pluginBin)
	install.Env = os.Environ()
	for k, v := range envVars {
		install.Env = append(install.Env, k+"="+v)
	}
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("pulumi plugin install: %v\n%s", err, out)
	}

	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	spec := &e2eSpec{
		nodeName: cn.Agent.Name, nodeAddr: cn.Agent.Addr, image: env.Image,
		secretValue: randomHex(t, "herd-e2e-secret"), greeting: "hello", replicas: 2,
	}
	const created = 6 // the stack, node, secret, pod, service and deployment (the default provider is not counted)
	const project, stackName = "herd-e2e", "dev"
	stack, err := auto.UpsertStackInlineSource(ctx, stackName, project, e2eProgram(spec),
		auto.Pulumi(cmd), auto.PulumiHome(home), auto.WorkDir(work), auto.EnvVars(envVars),
		auto.Project(workspace.Project{
			Name:    tokens.PackageName(project),
			Runtime: workspace.NewProjectRuntimeInfo("go", nil),
			Backend: &workspace.ProjectBackend{URL: "file://" + backend},
		}),
		auto.SecretsProvider("passphrase"))
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	keyPEM, err := os.ReadFile(env.Certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// TLS through Pulumi config: the CA and client certificate as files,
	// the client key's PEM content as a secret.
	for k, v := range map[string]auto.ConfigValue{
		"herd:caCert":     {Value: env.Certs.CAFile},
		"herd:clientCert": {Value: env.Certs.ClientCertFile},
		"herd:clientKey":  {Value: string(keyPEM), Secret: true},
	} {
		if err := stack.SetConfig(ctx, k, v); err != nil {
			t.Fatalf("config %s: %v", k, err)
		}
	}

	// up: everything is created and on the node.
	start := time.Now()
	up, err := stack.Up(ctx, optup.ProgressStreams(testWriter{t}))
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Logf("up: %s", time.Since(start).Round(time.Millisecond))
	if got := changes(up.Summary.ResourceChanges, "create"); got != created {
		t.Fatalf("up created %d resources, want %d: %v", got, created, *up.Summary.ResourceChanges)
	}
	deployments := herdv1.NewDeploymentServiceClient(cn.Conn)
	api := apiReplicas(t, cn.Pods, 2)
	if rev, ready := up.Outputs["apiRevision"].Value, up.Outputs["apiReady"].Value; rev != float64(1) || ready != float64(2) {
		t.Fatalf("api outputs: revision %v, ready replicas %v; want 1 and 2", rev, ready)
	}
	pod := getPod(t, cn.Pods, "web")
	if pod == nil || pod.GetStatus().GetPhase() != "Running" || !pod.GetStatus().GetReady() {
		t.Fatalf("web pod on the node after up: %v", pod)
	}
	if uid := up.Outputs["podUid"].Value; uid != pod.GetUid() {
		t.Fatalf("podUid output %v, node has %s", uid, pod.GetUid())
	}
	svc, err := cn.Services.GetService(ctx, &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatalf("service on the node after up: %v", err)
	}
	if ip := up.Outputs["clusterIp"].Value; ip != svc.GetStatus().GetClusterIp() || ip == "" {
		t.Fatalf("clusterIp output %v, node has %q", ip, svc.GetStatus().GetClusterIp())
	}
	revealed, err := secrets.RevealSecret(ctx, &herdv1.RevealSecretRequest{Namespace: "default", Name: "web-token"})
	if err != nil {
		t.Fatalf("secret on the node after up: %v", err)
	}
	if string(revealed.GetData()["token"]) != spec.secretValue {
		t.Fatal("the secret on the node does not hold the declared value")
	}
	if !up.Outputs["secretChecksum"].Secret && up.Outputs["secretChecksum"].Value == "" {
		t.Fatalf("secretChecksum output: %+v", up.Outputs["secretChecksum"])
	}

	// The state on disk: the secret value and the client key only as
	// ciphertext (every file of the backend: state, backups, history).
	checkStateFiles(t, backend, project, stackName, spec.secretValue, string(keyPEM))

	// A second preview: nothing to do.
	pre, err := stack.Preview(ctx, optpreview.ProgressStreams(testWriter{t}))
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	for op, n := range pre.ChangeSummary {
		if op != apitype.OpSame && n > 0 {
			t.Fatalf("second preview wants changes: %v", pre.ChangeSummary)
		}
	}

	// A changed pod is replaced: a new uid on the node. The deployment
	// scales in place: its two replicas stay, a third joins them.
	spec.greeting = "bonjour"
	spec.replicas = 3
	if _, err := stack.Up(ctx, optup.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("up with a changed pod and more replicas: %v", err)
	}
	api3 := apiReplicas(t, cn.Pods, 3)
	for name, uid := range api {
		if api3[name] != uid {
			t.Fatalf("api replica %s (uid %s) did not survive the scale: %v", name, uid, api3)
		}
	}
	pod2 := getPod(t, cn.Pods, "web")
	if pod2 == nil || pod2.GetUid() == pod.GetUid() || pod2.GetStatus().GetPhase() != "Running" {
		t.Fatalf("web pod after the change: %v, want a new Running pod (old uid %s)", pod2, pod.GetUid())
	}
	if got := pod2.GetSpec().GetContainers()[0].GetEnv()["GREETING"]; got != "bonjour" {
		t.Fatalf("replaced pod's GREETING %q", got)
	}
	svc2, err := cn.Services.GetService(ctx, &herdv1.GetServiceRequest{Namespace: "default", Name: "web"})
	if err != nil || svc2.GetStatus().GetClusterIp() != svc.GetStatus().GetClusterIp() {
		t.Fatalf("service after the pod's replacement: %v %v", svc2, err)
	}

	// destroy: nothing left on the node.
	if _, err := stack.Destroy(ctx, optdestroy.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if p := getPod(t, cn.Pods, "web"); p != nil {
		t.Fatalf("pod after destroy: %v", p)
	}
	if _, err := cn.Services.GetService(ctx, &herdv1.GetServiceRequest{Namespace: "default", Name: "web"}); status.Code(err) != codes.NotFound {
		t.Fatalf("service after destroy: %v, want NotFound", err)
	}
	if _, err := secrets.GetSecret(ctx, &herdv1.GetSecretRequest{Namespace: "default", Name: "web-token"}); status.Code(err) != codes.NotFound {
		t.Fatalf("secret after destroy: %v, want NotFound", err)
	}
	if _, err := deployments.GetDeployment(ctx, &herdv1.GetDeploymentRequest{Namespace: "default", Name: "api"}); status.Code(err) != codes.NotFound {
		t.Fatalf("deployment after destroy: %v, want NotFound", err)
	}
	apiReplicas(t, cn.Pods, 0)
	n, err := cn.Nodes.GetNode(ctx, &herdv1.GetNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.GetLabels()["role"]; ok {
		t.Fatalf("node labels after destroy: %v", n.GetLabels())
	}
	checkStateFiles(t, backend, project, stackName, spec.secretValue, string(keyPEM))
	t.Logf("up, preview, replace, destroy: %s", time.Since(start).Round(time.Millisecond))
}

// Pulumi's secret signature as it appears in the state file ("key":
// "value"; the file backend writes compact JSON, so allow any spacing).
var secretSig = regexp.MustCompile(`"4dabf18193072939515e22adb298388d":\s*"1b47061264138c4ac30d75fd1eb44270"`)

// checkStateFiles reads the stack's state file as raw bytes, and every file
// of the backend (state, backups, history): no secret in the clear; while
// resources exist, herd_secret's data (inputs and outputs) and the
// provider's clientKey are Pulumi secrets with ciphertext.
func checkStateFiles(t *testing.T, backend, project, stack string, secretsInClear ...string) {
	t.Helper()
	stateFile := filepath.Join(backend, ".pulumi", "stacks", project, stack+".json")
	raw, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	var state struct {
		Checkpoint struct {
			Latest struct {
				Resources []struct {
					Type    string                     `json:"type"`
					Inputs  map[string]json.RawMessage `json:"inputs"`
					Outputs map[string]json.RawMessage `json:"outputs"`
				} `json:"resources"`
			} `json:"latest"`
		} `json:"checkpoint"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatalf("state file %s: %v", stateFile, err)
	}
	encrypted := func(what string, v json.RawMessage) {
		t.Helper()
		if !secretSig.Match(v) || !bytes.Contains(v, []byte(`"ciphertext":"v1:`)) {
			t.Errorf("state file %s: %s is not an encrypted secret: %s", stateFile, what, v)
		}
	}
	for _, r := range state.Checkpoint.Latest.Resources {
		switch r.Type {
		case tokSecret:
			encrypted("herd:index/secret:Secret input data", r.Inputs["data"])
			encrypted("herd:index/secret:Secret output data", r.Outputs["data"])
		case "pulumi:providers:" + provider.Name:
			encrypted("provider input clientKey", r.Inputs["clientKey"])
		}
	}
	if len(state.Checkpoint.Latest.Resources) > 0 && !secretSig.Match(raw) {
		t.Errorf("state file %s holds no secret signature", stateFile)
	}
	err = filepath.WalkDir(backend, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secretsInClear {
			if bytes.Contains(b, []byte(s)) {
				return fmt.Errorf("%s holds a secret in the clear", p)
			}
			// JSON-escaped form (a PEM's newlines).
			if esc := strings.ReplaceAll(s, "\n", `\n`); bytes.Contains(b, []byte(esc)) {
				return fmt.Errorf("%s holds a secret in the clear (JSON-escaped)", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// apiReplicas returns the api deployment's replicas on the node (name →
// uid), which must be want, every one ready.
func apiReplicas(t *testing.T, pc herdv1.PodServiceClient, want int) map[string]string {
	t.Helper()
	res, err := pc.ListPods(testCtx(t, 30*time.Second), &herdv1.ListPodsRequest{
		LabelSelector: map[string]string{"herd.io/deployment": "default.api"},
	})
	if err != nil {
		t.Fatalf("list the api replicas: %v", err)
	}
	out := map[string]string{}
	for _, p := range res.GetPods() {
		if !p.GetStatus().GetReady() {
			t.Fatalf("api replica %s not ready: %v", p.GetSpec().GetName(), p.GetStatus())
		}
		out[p.GetSpec().GetName()] = p.GetUid()
	}
	if len(out) != want {
		t.Fatalf("%d api replicas on the node, want %d: %v", len(out), want, out)
	}
	return out
}

func changes(m *map[string]int, op string) int {
	if m == nil {
		return 0
	}
	return (*m)[op]
}

func randomHex(t *testing.T, prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// testWriter sends the CLI's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

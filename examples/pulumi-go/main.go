// The herd quickstart as a Pulumi Go program: adopt one node, run a pod on
// it, and put a web pod behind a service with a stable virtual IP and DNS
// name; the web pod reads a secret from a tmpfs file. It declares what
// examples/quickstart declares for Terraform.
//
//	pulumi plugin install resource herd 0.1.0 --file bin/pulumi-resource-herd
//	pulumi config set herd:caCert certs/ca.pem
//	pulumi config set herd:clientCert certs/ops.pem
//	pulumi config set --secret herd:clientKey < certs/ops-key.pem
//	pulumi config set --secret webToken "$(openssl rand -hex 16)"
//	pulumi up
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/herd-project/terraform-provider-herd/sdk/go/herd"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg := config.New(ctx, "")
		image := cfg.Require("image")

		node, err := herd.NewNode(ctx, "demo", &herd.NodeArgs{
			Name:    pulumi.String(cfg.Require("nodeName")),
			Address: pulumi.String(cfg.Require("nodeAddress")),
			Labels:  pulumi.StringMap{"role": pulumi.String("demo")},
		})
		if err != nil {
			return err
		}
		nodeID := node.ID().ToStringOutput()

		hello, err := herd.NewPod(ctx, "hello", &herd.PodArgs{
			Node:   nodeID,
			Name:   pulumi.String("hello"),
			Labels: pulumi.StringMap{"app": pulumi.String("hello")},
			Containers: herd.PodContainerArray{herd.PodContainerArgs{
				Name:     pulumi.String("greeter"),
				Image:    pulumi.String(image),
				Commands: pulumi.ToStringArray([]string{"sh", "-c"}),
				Args: pulumi.ToStringArray([]string{`echo "$GREETING from herd: pod $(hostname)"
trap 'echo "$GREETING got SIGTERM, bye"; exit 0' TERM
while true; do sleep 1; done`}),
				Env:    pulumi.StringMap{"GREETING": pulumi.String("hello")},
				Cpu:    pulumi.String("250m"),
				Memory: pulumi.String("64Mi"),
			}},
		})
		if err != nil {
			return err
		}

		// The token is a Pulumi secret (pulumi config set --secret): it is
		// encrypted in the stack's config and state. herd_secret's `data`
		// is sensitive, so the SDK marks it secret in any case.
		token, err := herd.NewSecret(ctx, "web", &herd.SecretArgs{
			Node: nodeID,
			Name: pulumi.String("web-token"),
			Data: pulumi.StringMap{"token": cfg.RequireSecret("webToken")},
		})
		if err != nil {
			return err
		}

		// A web server that reports ready only once it serves: up returns
		// when the pod is ready.
		web, err := herd.NewPod(ctx, "web", &herd.PodArgs{
			Node:   nodeID,
			Name:   pulumi.String("web"),
			Labels: pulumi.StringMap{"app": pulumi.String("web")},
			Containers: herd.PodContainerArray{herd.PodContainerArgs{
				Name:     pulumi.String("httpd"),
				Image:    pulumi.String(image),
				Commands: pulumi.ToStringArray([]string{"sh", "-c"}),
				Args:     pulumi.ToStringArray([]string{`mkdir -p /www && echo "hello from pod $(hostname) through a herd service; its secret token is $(wc -c < /run/secrets/web-token/token) bytes" > /www/index.html && exec httpd -f -p 8080 -h /www`}),
				// /run/secrets/web-token/token, on a tmpfs, mode 0400
				SecretMounts: herd.PodContainerSecretMountArray{herd.PodContainerSecretMountArgs{Secret: token.Name}},
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

		// The pod first, so that the service has a ready endpoint when up ends.
		svc, err := herd.NewService(ctx, "web", &herd.ServiceArgs{
			Node:     nodeID,
			Name:     pulumi.String("web"),
			Selector: pulumi.StringMap{"app": pulumi.String("web")},
			Ports: herd.ServicePortArray{herd.ServicePortArgs{
				Name: pulumi.String("http"), Port: pulumi.Int(80), TargetPortName: pulumi.String("http"),
			}},
		}, pulumi.DependsOn([]pulumi.Resource{web}))
		if err != nil {
			return err
		}

		ctx.Export("service", pulumi.StringMap{"clusterIp": svc.ClusterIp, "dnsName": svc.DnsName})
		ctx.Export("node", pulumi.Map{"id": node.ID(), "ready": node.Ready, "agentd": node.AgentVersion})
		ctx.Export("pod", pulumi.StringMap{"id": hello.ID().ToStringOutput(), "phase": hello.Phase, "uid": hello.Uid})
		// a keyed HMAC of the data, never the data
		ctx.Export("secretChecksum", token.Checksum)
		return nil
	})
}

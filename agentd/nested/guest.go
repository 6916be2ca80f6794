package nested

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The nested cluster's API, reached through the control-plane endpoint
// with the admin kubeconfig agentd generated. Never SSH, never the guest's
// console: what agentd knows of a guest is what its API server says.

func guestClient(kubeconfig []byte) (kubernetes.Interface, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("nested kubeconfig: %w", err)
	}
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// guestReadyz asks the nested API server's /readyz through the endpoint.
func guestReadyz(ctx context.Context, kubeconfig []byte) error {
	c, err := guestClient(kubeconfig)
	if err != nil {
		return err
	}
	b, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("GET /readyz: %w", err)
	}
	if s := strings.TrimSpace(string(b)); s != "ok" {
		return fmt.Errorf("GET /readyz: %q", s)
	}
	return nil
}

// guestNodesReady says which of the named nested Nodes are Ready.
func guestNodesReady(ctx context.Context, kubeconfig []byte) (map[string]bool, error) {
	c, err := guestClient(kubeconfig)
	if err != nil {
		return nil, err
	}
	l, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nested nodes: %w", err)
	}
	out := map[string]bool{}
	for _, n := range l.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		out[n.Name] = ready
	}
	return out, nil
}

// guestDeleteNode removes a nested Node before its VM goes (scale down).
func guestDeleteNode(ctx context.Context, kubeconfig []byte, name string) error {
	c, err := guestClient(kubeconfig)
	if err != nil {
		return err
	}
	err = c.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// guestMintToken creates a fresh bootstrap token in the nested cluster
// for workers added after creation (the one of kubeadm init expires
// after 24 hours), exactly as `kubeadm token create` stores it.
func guestMintToken(ctx context.Context, kubeconfig []byte, ttl time.Duration) (string, error) {
	tok, err := newBootstrapToken()
	if err != nil {
		return "", err
	}
	id, secret, _ := strings.Cut(tok, ".")
	c, err := guestClient(kubeconfig)
	if err != nil {
		return "", err
	}
	_, err = c.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system"},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"description":                    "herd: workers added by agentd",
			"token-id":                       id,
			"token-secret":                   secret,
			"expiration":                     time.Now().Add(ttl).UTC().Format(time.RFC3339),
			"usage-bootstrap-authentication": "true",
			"usage-bootstrap-signing":        "true",
			"auth-extra-groups":              "system:bootstrappers:kubeadm:default-node-token",
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create a bootstrap token in the nested cluster: %w", err)
	}
	return tok, nil
}

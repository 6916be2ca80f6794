# Read a nested cluster's admin kubeconfig without storing it anywhere
# (Terraform or OpenTofu 1.10 and later) and configure the kubernetes
# provider with it.
ephemeral "herd_cluster_kubeconfig" "dev" {
  node = herd_cluster.dev.node
  # uid is known only once the cluster exists: the condition defers reading
  # the kubeconfig until then (the first plan cannot read it).
  name = herd_cluster.dev.uid != "" ? herd_cluster.dev.name : null
}

locals {
  dev_user = yamldecode(ephemeral.herd_cluster_kubeconfig.dev.kubeconfig).users[0].user
}

provider "kubernetes" {
  host                   = ephemeral.herd_cluster_kubeconfig.dev.endpoint
  cluster_ca_certificate = ephemeral.herd_cluster_kubeconfig.dev.ca_certificate
  client_certificate     = base64decode(local.dev_user["client-certificate-data"])
  client_key             = base64decode(local.dev_user["client-key-data"])
}

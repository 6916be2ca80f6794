# A nested Kubernetes cluster built by herd, then used: the hashicorp/kubernetes
# provider is configured from the cluster and creates a namespace in it.
#
# The node's agentd must run with --nested-kubeconfig pointing at a host
# Kubernetes cluster with KubeVirt (and its CDI when data_volume_size is set),
# and the VM image must carry cloud-init and kubeadm for kubernetes_version.
# Set the provider's TLS material with an admin client certificate
# (HERD_CA_CERT, HERD_CLIENT_CERT, HERD_CLIENT_KEY): the nested cluster API
# requires one.
#
# Destroying: deletion_protection is true by default, so `destroy` is refused.
# Set it to false, apply, then destroy.

terraform {
  required_providers {
    herd = {
      source = "herd-project/herd"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.36"
    }
  }
}

variable "node_name" {
  description = "The owning node's name, as in its certificate."
  type        = string
  default     = "node-1"
}

variable "node_address" {
  description = "agentd's mTLS address (host:port)."
  type        = string
  default     = "10.0.0.5:7443"
}

variable "vm_image" {
  description = "Container disk image of the VMs: cloud-init, kubeadm, kubelet and a container runtime."
  type        = string
  default     = "registry.example.com/kube-node:1.34.3"
}

variable "deletion_protection" {
  description = "Set to false (and apply) before destroying the cluster."
  type        = bool
  default     = true
}

provider "herd" {}

resource "herd_node" "node1" {
  name    = var.node_name
  address = var.node_address
}

resource "herd_cluster" "dev" {
  node               = herd_node.node1.id
  name               = "dev"
  kubernetes_version = "1.34.3"
  pod_cidr           = "10.200.0.0/16"
  service_cidr       = "10.201.0.0/16"

  control_plane {
    replicas = 1
    image    = var.vm_image
  }

  workers {
    replicas = 2
    image    = var.vm_image
  }

  deletion_protection = var.deletion_protection
}

# The admin kubeconfig, read without being stored in the plan or the state
# (Terraform or OpenTofu 1.10 and later). uid is known only once the cluster
# exists, so the condition defers reading the kubeconfig until then.
ephemeral "herd_cluster_kubeconfig" "dev" {
  node = herd_cluster.dev.node
  name = herd_cluster.dev.uid != "" ? herd_cluster.dev.name : null
}

locals {
  # A kubeconfig's client certificate and key are base64 PEM.
  admin = yamldecode(ephemeral.herd_cluster_kubeconfig.dev.kubeconfig).users[0].user
}

provider "kubernetes" {
  host                   = ephemeral.herd_cluster_kubeconfig.dev.endpoint
  cluster_ca_certificate = ephemeral.herd_cluster_kubeconfig.dev.ca_certificate
  client_certificate     = base64decode(local.admin["client-certificate-data"])
  client_key             = base64decode(local.admin["client-key-data"])

  # With an older CLI (no ephemeral resources), use the cluster's attributes
  # instead; its kubeconfig is then stored (sensitive) in the state:
  #   host                   = herd_cluster.dev.endpoint
  #   cluster_ca_certificate = herd_cluster.dev.ca_certificate
  #   client_certificate     = base64decode(yamldecode(herd_cluster.dev.kubeconfig).users[0].user["client-certificate-data"])
  #   client_key             = base64decode(yamldecode(herd_cluster.dev.kubeconfig).users[0].user["client-key-data"])
}

resource "kubernetes_namespace" "apps" {
  metadata {
    name = "apps"
  }
}

output "endpoint" {
  value = herd_cluster.dev.endpoint
}

output "vms" {
  value = [for vm in herd_cluster.dev.vms : "${vm.name} (${vm.role}): ${vm.phase}"]
}

# A nested Kubernetes cluster on the host cluster that agentd on node-1 is
# configured for (agentd --nested-kubeconfig): one control-plane VM and
# three workers, KubeVirt VirtualMachines booted from a container disk
# image that carries kubeadm for the version.
resource "herd_cluster" "dev" {
  node               = herd_node.node1.id
  name               = "dev"
  kubernetes_version = "1.34.3"

  # Must not overlap each other (checked at plan time), the host cluster's
  # ranges or herd's --cluster-cidr and --service-cidr (checked by agentd).
  pod_cidr     = "10.200.0.0/16"
  service_cidr = "10.201.0.0/16"

  control_plane {
    replicas = 1 # or 3; any change here replaces the cluster
    cpu      = "2"
    memory   = "4Gi"
    image    = "registry.example.com/kube-node:1.34.3"
  }

  workers {
    replicas         = 3 # scales in place
    cpu              = "4"
    memory           = "8Gi"
    image            = "registry.example.com/kube-node:1.34.3"
    data_volume_size = "40Gi"
  }

  endpoint_exposure = "LoadBalancer"
  network_binding   = "bridge"
  step_timeout      = "10m"

  # Destroying or replacing the cluster is refused while this is true
  # (the default): set it to false and apply first.
  deletion_protection = true

  timeouts {
    create = "45m"
  }
}

output "dev_endpoint" {
  value = herd_cluster.dev.endpoint
}

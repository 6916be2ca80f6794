# Terraform 1.12 or OpenTofu 1.12 and later: a nested cluster is imported by
# its name and the id of the herd_node that owns it.
import {
  to = herd_cluster.dev
  identity = {
    name = "dev"
    node = "node-1@10.0.0.5:7443"
  }
}

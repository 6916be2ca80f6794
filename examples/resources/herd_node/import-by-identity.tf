# Terraform 1.12 or OpenTofu 1.12 and later: a node is imported by its name
# and address.
import {
  to = herd_node.node1
  identity = {
    name    = "node-1"
    address = "10.0.0.5:7443"
  }
}

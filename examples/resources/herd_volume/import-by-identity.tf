# Terraform 1.12 or OpenTofu 1.12 and later: a volume is imported by the
# id of the node that holds it, its namespace (default "default") and its
# name.
import {
  to = herd_volume.pgdata
  identity = {
    node      = "node-1@10.0.0.5:7443"
    namespace = "default"
    name      = "pgdata"
  }
}

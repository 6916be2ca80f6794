# Terraform 1.12 or OpenTofu 1.12 and later: a secret is imported by its
# namespace (default "default") and name, and the id of a node of its
# cluster to reach it through. Values are never imported: the first apply
# writes the configured data.
import {
  to = herd_secret.db
  identity = {
    namespace = "default"
    name      = "db"
    node      = "node-1@10.0.0.5:7443"
  }
}

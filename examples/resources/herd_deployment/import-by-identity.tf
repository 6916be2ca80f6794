# Terraform 1.12 or OpenTofu 1.12 and later: a deployment is imported by its
# namespace (default "default") and name, and the id of a node of its
# cluster to reach it through. Any member serves the cluster's deployments.
import {
  to = herd_deployment.web
  identity = {
    namespace = "default"
    name      = "web"
    node      = "node-1@10.0.0.5:7443"
  }
}

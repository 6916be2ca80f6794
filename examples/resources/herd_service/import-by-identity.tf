# Terraform 1.12 or OpenTofu 1.12 and later: a service is imported by its
# namespace (default "default") and name, and the id of a node of its
# cluster to reach it through. The identity keeps that node when node
# changes later: any member serves the cluster's services.
import {
  to = herd_service.web
  identity = {
    namespace = "default"
    name      = "web"
    node      = "node-1@10.0.0.5:7443"
  }
}

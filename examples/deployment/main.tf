# herd deployment example: three replicas of a small web server behind a
# service, placed by herd on the members of a cluster and rolled out without
# dropping a request. Change `message` below (one line) and apply again to
# watch a rolling update: the plan shows the rollout as a warning, and apply
# returns once revision 2 is complete.
#
# It works with a cluster of one node or more (agentd with --cluster-cidr,
# --gossip-listen and --gossip-key); the provider needs the TLS material
# (HERD_CA_CERT, HERD_CLIENT_CERT, HERD_CLIENT_KEY), see the README.

terraform {
  required_providers {
    herd = {
      source = "herd-project/herd"
    }
  }
}

variable "node" {
  description = "The id (NAME@ADDRESS) of any member of the cluster, e.g. a herd_node's id; the default is make demo's node."
  type        = string
  default     = "demo@127.0.0.1:7443"
}

variable "image" {
  description = "An image with busybox's sh and httpd (the demo serves one from a loopback registry)."
  type        = string
  default     = "127.0.0.1:5050/herd/busybox:1.35"
}

variable "namespace" {
  description = "The namespace of the deployment and its service."
  type        = string
  default     = "default"
}

locals {
  # Change this line and apply again: a new revision rolls out.
  message = "hello from revision one"
}

provider "herd" {}

resource "herd_deployment" "web" {
  node      = var.node
  namespace = var.namespace
  name      = "web"
  replicas  = 3 # a change of replicas alone scales in place
  selector = {
    app = "web"
  }

  template {
    labels = {
      app = "web"
    }

    container {
      name    = "httpd"
      image   = var.image
      command = ["sh", "-c", "mkdir -p /www && echo \"$MESSAGE (pod $(hostname))\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
      env = {
        MESSAGE = local.message
      }
      cpu            = "100m"
      memory         = "32Mi"
      memory_request = "16Mi"

      port {
        name           = "http"
        container_port = 8080
      }

      # New replicas take traffic, and old ones are drained, only once
      # this passes.
      readiness_probe {
        http_get {
          path      = "/"
          port_name = "http"
        }
        period_seconds = 1
      }
    }
  }

  placement = {
    strategy = "spread" # one replica per node first, then the emptiest
  }

  strategy = {
    type              = "RollingUpdate"
    max_surge         = 1 # one new replica at a time
    max_unavailable   = 0 # never below 3 available replicas
    min_ready_seconds = 2
  }
}

resource "herd_service" "web" {
  node      = var.node
  namespace = var.namespace
  name      = "web"
  selector  = herd_deployment.web.selector

  port {
    name             = "http"
    port             = 80
    target_port_name = "http"
  }
}

output "deployment" {
  value = {
    revision      = herd_deployment.web.revision
    phase         = herd_deployment.web.phase
    planned_nodes = herd_deployment.web.planned_nodes
    replicas      = [for r in herd_deployment.web.replica_status : "${r.pod} on ${r.node} (${r.pod_ip})"]
  }
}

output "service" {
  value = {
    cluster_ip = herd_service.web.cluster_ip
    dns_name   = herd_service.web.dns_name
  }
}

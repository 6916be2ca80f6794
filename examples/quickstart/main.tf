# herd quickstart: adopt one node, run a pod on it, and put a web pod behind
# a service with a stable virtual IP and DNS name; the web pod reads a
# write-only secret from a tmpfs file.
#
# `make demo` runs this against a local agentd it starts itself (a one-node
# cluster in a network namespace of its own). To use your own node, run
# agentd with --cluster-cidr, --gossip-listen and --gossip-key (services need
# a cluster; one node is a cluster of one), set the provider's TLS material
# (HERD_CA_CERT, HERD_CLIENT_CERT, HERD_CLIENT_KEY) and the variables below.

terraform {
  required_providers {
    herd = {
      source = "herd-project/herd"
    }
  }
}

variable "node_name" {
  description = "The node's name, as in its certificate."
  type        = string
  default     = "demo"
}

variable "node_address" {
  description = "agentd's mTLS address (host:port)."
  type        = string
  default     = "127.0.0.1:7443"
}

variable "image" {
  description = "Image for the pod (the demo serves busybox from a loopback registry)."
  type        = string
  default     = "127.0.0.1:5050/herd/busybox:1.35"
}

variable "web_token" {
  description = "A secret for the web pod. Write-only: it never reaches the plan or the state."
  type        = string
  sensitive   = true
  ephemeral   = true
}

provider "herd" {}

resource "herd_node" "demo" {
  name    = var.node_name
  address = var.node_address
  labels = {
    role = "demo"
  }
}

resource "herd_pod" "hello" {
  node = herd_node.demo.id
  name = "hello"
  labels = {
    app = "hello"
  }

  container {
    name    = "greeter"
    image   = var.image
    command = ["sh", "-c"]
    args = [<<-EOT
      echo "$GREETING from herd: pod $(hostname), memory limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) bytes, cpu quota $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)us per 100ms"
      trap 'echo "$GREETING got SIGTERM, bye"; exit 0' TERM
      while true; do sleep 1; done
    EOT
    ]
    env = {
      GREETING = "hello"
    }
    cpu    = "250m"
    memory = "64Mi"
  }
}

# A secret, written once and never kept in the state (OpenTofu or Terraform
# 1.11 and later). Bump data_wo_version to push a new value.
resource "herd_secret" "web" {
  node = herd_node.demo.id
  name = "web-token"
  data_wo = {
    token = var.web_token
  }
  data_wo_version = 1
}

# A web server that reports ready only once it serves, and a service in front
# of it: apply returns when the pod is ready, and the service's cluster IP
# stays the same for the service's life.
resource "herd_pod" "web" {
  node = herd_node.demo.id
  name = "web"
  labels = {
    app = "web"
  }

  container {
    name    = "httpd"
    image   = var.image
    command = ["sh", "-c", "mkdir -p /www && echo \"hello from pod $(hostname) through a herd service; its secret token is $(wc -c < /run/secrets/web-token/token) bytes in a mode $(stat -L -c %a /run/secrets/web-token/token) file on $(stat -f -c %T /run/secrets/web-token)\" > /www/index.html && exec httpd -f -p 8080 -h /www"]

    # /run/secrets/web-token/token, on a tmpfs, mode 0400
    secret_mount {
      secret = herd_secret.web.name
    }

    port {
      name           = "http"
      container_port = 8080
    }

    readiness_probe {
      http_get {
        path      = "/"
        port_name = "http"
      }
      period_seconds = 1
    }
  }
}

resource "herd_service" "web" {
  node = herd_node.demo.id
  name = "web"
  selector = {
    app = "web"
  }

  port {
    name             = "http"
    port             = 80
    target_port_name = "http"
  }

  # the pod first, so that the service has a ready endpoint when apply ends
  depends_on = [herd_pod.web]
}

output "service" {
  value = {
    cluster_ip = herd_service.web.cluster_ip
    dns_name   = herd_service.web.dns_name
  }
}

output "node" {
  value = {
    id         = herd_node.demo.id
    ready      = herd_node.demo.ready
    cpu_millis = herd_node.demo.capacity_cpu_millis
    memory     = herd_node.demo.capacity_memory_bytes
    agentd     = herd_node.demo.agent_version
  }
}

output "pod" {
  value = {
    id    = herd_pod.hello.id
    phase = herd_pod.hello.phase
    uid   = herd_pod.hello.uid
  }
}

output "secret" {
  value = {
    # a keyed HMAC of the data, never the data
    checksum = herd_secret.web.checksum
    holders  = herd_secret.web.holders
  }
}

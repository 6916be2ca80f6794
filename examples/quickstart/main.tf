# herd quickstart: adopt one node and run a pod on it.
#
# `make demo` runs this against a local agentd it starts itself. To use your
# own node, set the provider's TLS material (HERD_CA_CERT, HERD_CLIENT_CERT,
# HERD_CLIENT_KEY) and the variables below.

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

output "node" {
  value = {
    id          = herd_node.demo.id
    ready       = herd_node.demo.ready
    cpu_millis  = herd_node.demo.capacity_cpu_millis
    memory      = herd_node.demo.capacity_memory_bytes
    agentd      = herd_node.demo.agent_version
  }
}

output "pod" {
  value = {
    id    = herd_pod.hello.id
    phase = herd_pod.hello.phase
    uid   = herd_pod.hello.uid
  }
}

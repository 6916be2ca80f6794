# herd volume example: a persistent volume on one node and a pod that keeps
# its data there, with a config file delivered beside it. The data
# survives a replacement of the pod: change `image` (or anything else that
# replaces the pod) and apply again; the counter carries on where it was.
# Change `greeting` and apply again: the config file changes in the running
# container, in place, without a restart.
#
# Volumes are node-local: the pod runs on the volume's node, and the plan
# refuses a volume of another node or namespace. The provider needs the
# TLS material (HERD_CA_CERT, HERD_CLIENT_CERT, HERD_CLIENT_KEY), see the
# README.

terraform {
  required_providers {
    herd = {
      source = "herd-project/herd"
    }
  }
}

variable "node" {
  description = "The node's id (NAME@ADDRESS), e.g. a herd_node's id; the default is make demo's node."
  type        = string
  default     = "demo@127.0.0.1:7443"
}

variable "image" {
  description = "An image with busybox's sh (the demo serves one from a loopback registry). Changing it replaces the pod, not its data."
  type        = string
  default     = "127.0.0.1:5050/herd/busybox:1.35"
}

locals {
  # Change this line and apply again: an in-place update of the file.
  greeting = "hello from the first config"
}

provider "herd" {}

# 64 MiB of ext4 on the node. Deletion protection is on by default: a
# destroy (or a change that replaces the volume) is refused at plan until
# deletion_protection = false is applied. A larger size grows it in place;
# a smaller one is refused.
resource "herd_volume" "data" {
  node = var.node
  name = "counter-data"
  size = "64Mi"
}

resource "herd_pod" "counter" {
  node = var.node
  name = "counter"

  container {
    name    = "app"
    image   = var.image
    command = ["sh", "-c"]
    args = [<<-EOT
      trap 'exit 0' TERM
      n=$(cat /data/n 2>/dev/null || echo 0)
      echo "starting at $n"
      while true; do
        n=$((n+1))
        echo $n > /data/n.tmp && mv /data/n.tmp /data/n
        echo "$n: $(cat /etc/counter/greeting)"
        sleep 1
      done
    EOT
    ]
    memory = "32Mi"

    # The volume's id lets the plan check its node and namespace, and
    # makes the pod wait for it.
    volume_mount {
      volume = herd_volume.data.id
      path   = "/data"
    }

    # Read-only in the container, in a directory of its own. Content and
    # mode change in place; moving it replaces the pod.
    config_file {
      path    = "/etc/counter/greeting"
      content = local.greeting
    }
  }
}

# phase, bound_to and used_bytes change with the pods that use the volume:
# `herdctl volumes` shows them as they are now.
output "volume" {
  value = {
    id         = herd_volume.data.id
    uid        = herd_volume.data.uid
    capacity   = herd_volume.data.capacity_bytes
    protection = herd_volume.data.deletion_protection
  }
}

output "pod" {
  value = {
    id  = herd_pod.counter.id
    uid = herd_pod.counter.uid
  }
}

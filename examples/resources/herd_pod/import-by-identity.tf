# Terraform 1.12 or OpenTofu 1.12 and later: a pod is imported by its node's
# id (NAME@ADDRESS) and its name.
import {
  to = herd_pod.web
  identity = {
    node = "node-1@10.0.0.5:7443"
    name = "web"
  }
}

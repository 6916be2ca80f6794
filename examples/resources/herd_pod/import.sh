# A pod is imported by its node's id and its name: NAME@ADDRESS/POD.
terraform import herd_pod.web node-1@10.0.0.5:7443/web

# A nested cluster is imported by its name and the id of the herd_node that
# owns it (NAME@ADDRESS), joined by '@'.
terraform import herd_cluster.dev dev@node-1@10.0.0.5:7443

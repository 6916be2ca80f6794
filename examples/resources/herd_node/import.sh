# A node is imported by its id, NAME@ADDRESS.
terraform import herd_node.node1 node-1@10.0.0.5:7443

# A 10 GiB volume on one node, for the pods there that mount it. Deletion
# protection is on by default: to delete the volume, set
# deletion_protection = false, apply, then destroy.
resource "herd_volume" "pgdata" {
  node = herd_node.node1.id
  name = "pgdata"
  size = "10Gi" # a larger size grows it in place; a smaller one is refused
}

# A scratch volume that may be deleted with the configuration.
resource "herd_volume" "cache" {
  node                = herd_node.node1.id
  namespace           = "web"
  name                = "cache"
  size                = "512Mi"
  deletion_protection = false
}

# A volume whose node herd chooses at creation among the candidates (the
# emptiest ready one), then keeps: a deployment that mounts it runs there.
resource "herd_volume" "uploads" {
  node_candidates = [herd_node.node1.id, herd_node.node2.id]
  name            = "uploads"
  size            = "5Gi"
}

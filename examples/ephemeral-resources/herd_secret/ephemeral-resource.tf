# Read a secret's values without storing them anywhere (Terraform or
# OpenTofu 1.10 and later), e.g. to copy them into a secret of another
# namespace through its write-only data_wo. node must hold the secret.
ephemeral "herd_secret" "db" {
  node      = herd_node.db1.id
  namespace = "default"
  name      = "db"
}

resource "herd_secret" "db_copy" {
  node            = herd_node.node1.id
  namespace       = "reporting"
  name            = "db"
  data_wo         = ephemeral.herd_secret.db.data
  data_wo_version = 1
}

# A secret is imported by NAMESPACE/NAME and the id of a node of its
# cluster to reach it through (NAME@ADDRESS), joined by '@'. Values are
# never imported: keep them in data_wo (or data) in the configuration; the
# first apply writes them, which changes nothing when they are the
# secret's current values (its checksum stays, no pod restarts).
terraform import herd_secret.db default/db@node-1@10.0.0.5:7443

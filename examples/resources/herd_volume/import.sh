# A volume is imported by NODEID/NAMESPACE/NAME: the id of the herd_node
# that holds it (NAME@ADDRESS), its namespace and its name.
terraform import herd_volume.pgdata node-1@10.0.0.5:7443/default/pgdata

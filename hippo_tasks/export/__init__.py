"""`hd export k8s`: the stack a plan describes, as plain Kubernetes manifests.

Pure code over the model's plan (no cluster, no I/O but writing the output file):
`target` builds the plan as the image would run it, `support` names what a cluster
cannot run, `stack_layout` / `services_layout` turn the plan into objects, `yamlout`
writes them. `wait` is the one piece that runs inside the image (the init containers).
"""

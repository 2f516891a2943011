"""The Kubeflow pipeline over the components: build, compile, submit, run locally."""

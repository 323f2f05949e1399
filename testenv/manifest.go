package testenv

import "fmt"

// AppManifest is the YAML of an app as tests and benchmarks write it into a
// bundle: a Deployment of replicas pods running image, labelled app: name,
// whose container calls its peer inside its own color
// (http://server-${TANDEM_COLOR}:8080), and a Service on port 8080.
func AppManifest(name, image string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[3]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: %[1]s
        image: %[2]s
        env:
        - {name: PEER, value: "http://server-${TANDEM_COLOR}:8080"}
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  selector: {app: %[1]s}
  ports:
  - port: 8080
`, name, image, replicas)
}

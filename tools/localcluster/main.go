// Command localcluster is a multicall binary: one executable that runs
// kube-apiserver, kube-controller-manager, an embedded etcd or kubectl, each as its own
// OS process. Sharing one binary saves link time and disk (hyperkube pattern);
// separate processes keep the components' process-global state apart.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	_ "time/tzdata" // CronJob time zone support without a system zoneinfo

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/component-base/version"

	"go.etcd.io/etcd/server/v3/etcdmain"

	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

const usage = "usage: localcluster {kube-apiserver|kube-controller-manager|etcd|kubectl|version} [flags]"

func main() {
	component, args := splitArgs(os.Args)
	switch component {
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kubectl":
		cmd := kubectl.NewDefaultKubectlCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "version":
		fmt.Println(version.Get().GitVersion)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}

// splitArgs supports both symlink mode (argv[0] names the component) and
// subcommand mode (argv[1] names it).
func splitArgs(argv []string) (string, []string) {
	switch name := filepath.Base(argv[0]); name {
	case "kube-apiserver", "kube-controller-manager", "etcd", "kubectl":
		return name, argv[1:]
	}
	if len(argv) < 2 {
		return "", nil
	}
	return argv[1], argv[2:]
}

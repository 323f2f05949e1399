package main

import "github.com/tandem-gitops/tandem/fleet"

// tenancyOptions are the platform's rules for who acts for a bundle and
// where: --default-service-account, --allowed-namespaces and the rules of
// --tenancy-file, read once at start (a changed file takes a restart; the
// chart rolls the pod when its rules change).
func (c *config) tenancyOptions() (fleet.TenancyOptions, error) {
	o := fleet.TenancyOptions{DefaultServiceAccount: c.DefaultServiceAccount, AllowedNamespaces: c.AllowedNamespaces.list()}
	if c.TenancyFile == "" {
		return o, nil
	}
	f, err := fleet.LoadTenancyFile(c.TenancyFile)
	if err != nil {
		return o, err
	}
	o.File = f
	return o, nil
}

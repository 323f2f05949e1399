// Package contract holds the names of tandem's user contract
// (docs/reference.md) that several packages write or read: the file API
// version, the labels and annotations on objects and the field managers.
// render writes them, applier reads and writes them, promote and cmd/agent
// use the API version; none of them imports another for a name.
//
// Its one file, contract.go, holds those names, Short (the commit
// abbreviation of every message) and the field manager names per bundle
// (FieldManagerFor, TrafficFieldManagerFor, IsFieldManager). It imports
// nothing and does nothing else.
package contract

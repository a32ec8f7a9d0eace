// Command strata is the Strata server and its command-line tools, with the
// built-in classes. A user's own binary calls cli.Main with its classes.
package main

import (
	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/cmd/cli"
)

func main() { cli.Main(classes.All()...) }

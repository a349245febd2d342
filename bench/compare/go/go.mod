module fdsendbench/gounix

go 1.19

module mdevfs/mdevfstest

go 1.19

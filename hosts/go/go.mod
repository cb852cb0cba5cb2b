module tidelog

go 1.24

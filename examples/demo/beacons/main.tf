# Two beacons, kept only in terraform's local state: the built-in `terraform_data`
# resource needs no provider download.
resource "terraform_data" "north" {
  input = "north beacon"
}

resource "terraform_data" "south" {
  input = "south beacon"
}

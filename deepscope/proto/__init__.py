"""deepscope's protobuf schema (`deepscope.proto`) and its array codec.

`deepscope_pb2` is generated from `deepscope.proto` with protobuf 6.31.1
gencode (see the Makefile's `proto` target) and committed, so it imports
under protobuf 6.31 through 7.x.
"""

"""Compiles .proto files with the system protoc and grpc_cpp_plugin."""

def cc_grpc_genrule(name, srcs, services = []):
    """Generates C++ sources for `srcs` (paths relative to this package).

    Defines `<name>` (the genrule) and the filegroups `<name>_srcs` and
    `<name>_hdrs`. Files in `services` also get .grpc.pb.{h,cc}.
    """
    outs_cc = []
    outs_h = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs_cc.append(base + ".pb.cc")
        outs_h.append(base + ".pb.h")
        if src in services:
            outs_cc.append(base + ".grpc.pb.cc")
            outs_h.append(base + ".grpc.pb.h")
    pkg = native.package_name()
    native.genrule(
        name = name,
        srcs = srcs,
        outs = outs_cc + outs_h,
        cmd = ("protoc -I{pkg} -I/usr/include --cpp_out=$(GENDIR)/{pkg} " +
               "--grpc_out=$(GENDIR)/{pkg} " +
               "--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) " +
               "$(SRCS)").format(pkg = pkg),
    )
    native.filegroup(name = name + "_srcs", srcs = outs_cc)
    native.filegroup(name = name + "_hdrs", srcs = outs_h)

# What an image with `gpu = true` gets from nixpkgs' cudaPackages, in the nixpkgs import that
# has allowUnfree + cudaSupport (that import is used for gpu images only).
# torch 2.6 from PyPI is built for CUDA 12.4 and brings most of its CUDA libraries as
# nvidia-*-cu12 wheels (in poetry.lock); the CUDA runtime comes from nixpkgs, same 12.4 line,
# and the driver (libcuda.so.1) is mounted by the NVIDIA container runtime at run time.
{
  packages = [ "cudaPackages_12_4.cuda_cudart" ];
  # Where the NVIDIA container toolkit mounts the driver libraries (it picks /usr/lib64 for
  # images it does not recognise as Debian-like, /usr/lib/x86_64-linux-gnu otherwise).
  driverLibraryPath = [ "/usr/lib64" "/usr/lib/x86_64-linux-gnu" ];
  env = { NVIDIA_DRIVER_CAPABILITIES = "compute,utility"; };
}

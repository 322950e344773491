// Package faultproxy is a TCP proxy on loopback that tests use to cut one
// client (an agent) off from a server (etcd) and heal the cut again.
//
// Block simulates a network partition that silently drops packets: bytes on
// open connections stop flowing in both directions, and new connections are
// accepted but never forwarded, so clients time out instead of being
// refused. Unblock heals the partition: connections cut by Block (whose
// streams have lost bytes and cannot be resumed) are closed, and new
// connections are forwarded again.
package faultproxy
